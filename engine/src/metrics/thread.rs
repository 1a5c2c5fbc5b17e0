//! A stream thread's metrics: how long each step of its loop takes (poll, process, punctuate,
//! commit) and the records it processed.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use super::{counter, seconds};

static POLL: LazyLock<HistogramVec> = LazyLock::new(|| {
    seconds(
        "eddy_thread_poll_seconds",
        "How long a stream thread's round of polls took (up to a batch of records).",
        &["application", "thread"],
    )
});

static PROCESS: LazyLock<HistogramVec> = LazyLock::new(|| {
    seconds(
        "eddy_thread_process_seconds",
        "How long a stream thread took to run a round's records through its tasks.",
        &["application", "thread"],
    )
});

static PUNCTUATE: LazyLock<HistogramVec> = LazyLock::new(|| {
    seconds(
        "eddy_thread_punctuate_seconds",
        "How long a stream thread's wall-clock punctuation took.",
        &["application", "thread"],
    )
});

static COMMIT: LazyLock<HistogramVec> = LazyLock::new(|| {
    seconds(
        "eddy_thread_commit_seconds",
        "How long a stream thread's commit took (flush, transaction commit, local state).",
        &["application", "thread"],
    )
});

static PROCESSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "eddy_thread_processed_records_total",
        "Records a stream thread ran through its tasks.",
        &["application", "thread"],
    )
});

/// The handles of one stream thread.
#[derive(Clone)]
pub(crate) struct ThreadMetrics {
    pub poll: Histogram,
    pub process: Histogram,
    pub punctuate: Histogram,
    pub commit: Histogram,
    pub processed: IntCounter,
    pub transactions_committed: IntCounter,
    pub transactions_aborted: IntCounter,
}

impl ThreadMetrics {
    pub fn new(application: &str, thread: &str) -> Self {
        let labels = [application, thread];
        Self {
            poll: POLL.with_label_values(&labels),
            process: PROCESS.with_label_values(&labels),
            punctuate: PUNCTUATE.with_label_values(&labels),
            commit: COMMIT.with_label_values(&labels),
            processed: PROCESSED.with_label_values(&labels),
            transactions_committed: super::TRANSACTIONS_COMMITTED.with_label_values(&labels),
            transactions_aborted: super::TRANSACTIONS_ABORTED.with_label_values(&labels),
        }
    }
}

/// Observes the seconds since `started` in `histogram`.
pub(crate) fn observe_since(histogram: &Histogram, started: Instant) {
    histogram.observe(started.elapsed().as_secs_f64());
}
