//! Prometheus metrics of tasks: records processed, dropped and restored, record lateness and
//! end-to-end latency, per task.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use crate::metrics::{ages, counter};
use crate::task::collector::ProducedRecord;

static PROCESSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "eddy_task_processed_records_total",
        "Input records a task processed.",
        &["application", "task"],
    )
});

static DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "eddy_task_dropped_records_total",
        "Records a task dropped (late, invalid timestamp, bad record skipped by a handler), by reason.",
        &["application", "task", "reason"],
    )
});

static RESTORED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "eddy_task_restored_records_total",
        "Changelog records a task read back into a store on restore (only what its checkpoint did not cover).",
        &["application", "task", "store"],
    )
});

static LATENESS: LazyLock<HistogramVec> = LazyLock::new(|| {
    ages(
        "eddy_task_record_lateness_seconds",
        "How far behind its task's stream time a record's timestamp was (0 for a record in order); recorded at the debug level.",
        &["application", "task"],
    )
});

static END_TO_END: LazyLock<HistogramVec> = LazyLock::new(|| {
    ages(
        "eddy_task_end_to_end_latency_seconds",
        "Wall-clock time from an output record's timestamp to the task sending it.",
        &["application", "task"],
    )
});

/// The metric handles of one task.
pub(crate) struct TaskMetrics {
    application: String,
    task: String,
    pub processed: IntCounter,
    /// Recorded at the debug level only.
    lateness: Option<Histogram>,
    end_to_end: Histogram,
}

impl TaskMetrics {
    pub fn new(application: &str, task: &str, debug: bool) -> Self {
        let labels = [application, task];
        Self {
            application: application.to_string(),
            task: task.to_string(),
            processed: PROCESSED.with_label_values(&labels),
            lateness: debug.then(|| LATENESS.with_label_values(&labels)),
            end_to_end: END_TO_END.with_label_values(&labels),
        }
    }

    pub fn restored(&self, store: &str, records: u64) {
        RESTORED
            .with_label_values(&[self.application.as_str(), self.task.as_str(), store])
            .inc_by(records);
    }

    pub fn dropped(&self, reason: &str) {
        DROPPED
            .with_label_values(&[self.application.as_str(), self.task.as_str(), reason])
            .inc();
    }

    /// A record of timestamp `ts` arrives at stream time `stream_time`.
    pub fn lateness(&self, stream_time: i64, ts: i64) {
        if let Some(h) = &self.lateness {
            let late_ms = if stream_time == i64::MIN {
                0
            } else {
                (stream_time - ts).max(0)
            };
            h.observe(late_ms as f64 / 1e3);
        }
    }

    /// `produced` leave the task now.
    pub fn end_to_end(&self, produced: &[ProducedRecord]) {
        if produced.is_empty() {
            return;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        for r in produced {
            // A record stamped in the future (a clock ahead of this one) counts as 0.
            self.end_to_end
                .observe(now_ms.saturating_sub(r.timestamp).max(0) as f64 / 1e3);
        }
    }
}
