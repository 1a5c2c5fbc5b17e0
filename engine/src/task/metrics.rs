//! Prometheus metrics of tasks: records processed, dropped and restored, per task.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, Opts};

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("static metric definition is valid");
    // A second registration (several tests in one process) is harmless.
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

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

/// The metric handles of one task.
pub(crate) struct TaskMetrics {
    application: String,
    task: String,
    pub processed: IntCounter,
}

impl TaskMetrics {
    pub fn new(application: &str, task: &str) -> Self {
        Self {
            application: application.to_string(),
            task: task.to_string(),
            processed: PROCESSED.with_label_values(&[application, task]),
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
}
