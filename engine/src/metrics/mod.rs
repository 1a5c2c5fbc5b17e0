//! Prometheus metrics of a running application, in Kafka Streams' hierarchy (client → stream
//! thread → task → store) and Prometheus' conventions: base units (`_seconds`, `_bytes`),
//! counters ending in `_total`, histograms rather than rates, labels `application`, `thread`,
//! `task`, `store`, `topic`, `partition`.
//!
//! 1. Every family is registered once in the process's default registry, so the seven
//!    applications of the demo, sharing one process, share one `/metrics` (their series differ
//!    by `application`).
//! 2. Counters and histograms are recorded where the work happens (the stream thread's loop,
//!    the task, the producer, the changelog reader); gauges that cost something to read
//!    (RocksDB's properties, per-partition lag) are read when Prometheus scrapes
//!    (`scrape.rs`).
//! 3. `metrics.recording.level=debug` adds the figures that cost a clock read per operation or
//!    per record: store operation durations and record lateness.
//! 4. [`render_metrics`] is the text `GET /metrics` answers.
//!
//! ```
//! let text = eddy_engine::render_metrics().unwrap();
//! assert!(text.is_empty() || text.contains("# TYPE"));
//! ```

pub(crate) mod client;
pub(crate) mod scrape;
pub(crate) mod thread;

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
};

use crate::error::{EngineError, Result};

/// How much is recorded (`metrics.recording.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordingLevel {
    /// Counts, durations per round, lag, transactions, restores, RocksDB figures.
    #[default]
    Info,
    /// Also store operation durations and record lateness.
    Debug,
}

/// The text of every metric of the process, in Prometheus' exposition format.
pub fn render_metrics() -> Result<String> {
    let families = prometheus::default_registry().gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .map_err(|e| EngineError::Query(format!("encoding metrics: {e}")))
}

/// The content type of [`render_metrics`]'s text.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    // A second registration (two families of one name) would be a programming error caught by
    // the tests that render; it is harmless at run time.
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

pub(crate) fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

pub(crate) fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

/// A histogram of durations from 100 µs to about 100 s.
pub(crate) fn seconds(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = exponential_buckets(1e-4, 4.0, 11).expect("valid buckets");
    register(
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("valid metric"),
    )
}

/// A histogram of record ages (lateness, end-to-end latency) from 1 ms to about three days.
pub(crate) fn ages(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = exponential_buckets(1e-3, 4.0, 15).expect("valid buckets");
    register(
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("valid metric"),
    )
}

/// Transactions (exactly-once) and offset commits (at-least-once) of a stream thread.
pub(crate) static TRANSACTIONS_COMMITTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "eddy_transactions_committed_total",
        "Transactions a stream thread's producer committed (exactly_once_v2).",
        &["application", "thread"],
    )
});

pub(crate) static TRANSACTIONS_ABORTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "eddy_transactions_aborted_total",
        "Transactions aborted, and at-least-once commits failed, by stream thread.",
        &["application", "thread"],
    )
});

pub(crate) static DEAD_LETTERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "eddy_dead_letter_records_total",
        "Records sent to the dead-letter topic, by the source topic they were read from.",
        &["application", "topic"],
    )
});

pub(crate) static RESTORING_TASKS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "eddy_restoring_active_tasks",
        "Active tasks restoring their stores now.",
        &["application"],
    )
});

/// Records task `t` of `app` has still to restore (0 unless it is restoring).
pub(crate) fn restore_remaining(
    app: &str,
    topology: &crate::topology::Topology,
    t: &crate::runtime::status::TaskStatus,
) -> i64 {
    // Read only for a task restoring: reading a series makes it.
    topology
        .subtopologies()
        .get(t.subtopology)
        .filter(|_| t.state == "RESTORING")
        .map(|s| {
            s.stores
                .iter()
                .map(|store| {
                    RESTORE_REMAINING
                        .with_label_values(&[app, t.task.as_str(), store.as_str()])
                        .get()
                })
                .sum()
        })
        .unwrap_or(0)
}

pub(crate) static RESTORE_REMAINING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "eddy_restore_remaining_records",
        "Changelog records a restoring store has still to read.",
        &["application", "task", "store"],
    )
});

pub(crate) static RESTORE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    seconds(
        "eddy_restore_seconds",
        "How long a task took to restore its stores.",
        &["application"],
    )
});

/// Makes every family appear in `/metrics` from the start (a family without series is not
/// written, and a dashboard panel then has nothing to show until it happens).
pub(crate) fn touch(application: &str) {
    RESTORING_TASKS.with_label_values(&[application]);
    RESTORE_SECONDS.with_label_values(&[application]);
    client::touch(application);
}
