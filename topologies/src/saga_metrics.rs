//! The saga's own metrics (the platform's monitoring list): sagas started, finished by
//! outcome, in flight, their duration, and the compensation commands issued.
//!
//! Counters count processing: a transaction that aborts and is processed again counts its
//! sagas again (as every Kafka Streams metric does). The in-flight gauge is exact: each task
//! counts its running sagas from committed state when it opens, and takes them back when it
//! closes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
};

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

static STARTED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "platform_sagas_started_total",
            "Document→quiz sagas started (a document's first event).",
        )
        .expect("valid metric"),
    )
});

static FINISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "platform_sagas_finished_total",
                "Sagas finished, by outcome: completed, failed (a failure event), timed_out.",
            ),
            &["outcome"],
        )
        .expect("valid metric"),
    )
});

static IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "platform_sagas_in_flight",
            "Sagas running now, in the tasks open on this instance.",
        )
        .expect("valid metric"),
    )
});

static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "platform_saga_duration_seconds",
                "Event time from a saga's first event to its end, by outcome.",
            )
            .buckets(exponential_buckets(1.0, 2.0, 16).expect("valid buckets")),
            &["outcome"],
        )
        .expect("valid metric"),
    )
});

static COMPENSATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "platform_saga_compensation_commands_total",
                "Compensation commands the saga issued, by command.",
            ),
            &["command"],
        )
        .expect("valid metric"),
    )
});

/// Makes every family visible before the first saga ends (`commands`: every compensation
/// command the saga can issue).
pub(crate) fn touch(commands: &[&str]) {
    for command in commands {
        COMPENSATIONS.with_label_values(&[command]);
    }
    LazyLock::force(&STARTED);
    LazyLock::force(&IN_FLIGHT);
    for outcome in ["completed", "failed", "timed_out"] {
        FINISHED.with_label_values(&[outcome]);
        DURATION.with_label_values(&[outcome]);
    }
}

/// One task's share of the saga metrics.
#[derive(Debug, Default)]
pub(crate) struct SagaMetrics {
    /// Running sagas this task added to the in-flight gauge.
    in_flight: AtomicI64,
}

impl SagaMetrics {
    /// The task opened with `running` sagas in its committed state; `commands` are the
    /// compensations it may issue.
    pub fn opened(&self, running: i64, commands: &[&str]) {
        touch(commands);
        IN_FLIGHT.add(running - self.in_flight.swap(running, Ordering::Relaxed));
    }

    pub fn started(&self) {
        STARTED.inc();
        IN_FLIGHT.inc();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// `state`, running until now, was written at `now_ms`: counted if it ended.
    pub fn ended(&self, state: &crate::saga::SagaState, now_ms: i64) {
        use crate::saga::SagaStatus;
        let outcome = match state.status {
            SagaStatus::Running => return,
            SagaStatus::Completed => "completed",
            SagaStatus::Failed
                if state
                    .failure_reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("timeout")) =>
            {
                "timed_out"
            }
            SagaStatus::Failed => "failed",
        };
        self.finished(outcome, state.started_at_ms, now_ms);
    }

    /// A saga that started at `started_ms` ended at `now_ms` with `outcome`.
    fn finished(&self, outcome: &str, started_ms: i64, now_ms: i64) {
        FINISHED.with_label_values(&[outcome]).inc();
        DURATION
            .with_label_values(&[outcome])
            .observe((now_ms - started_ms).max(0) as f64 / 1e3);
        IN_FLIGHT.dec();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn compensation(&self, command: &str) {
        COMPENSATIONS.with_label_values(&[command]).inc();
    }

    /// The task closes: its sagas are no longer counted here.
    pub fn closed(&self) {
        IN_FLIGHT.sub(self.in_flight.swap(0, Ordering::Relaxed));
    }
}
