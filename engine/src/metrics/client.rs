//! The client's metrics: its state (Kafka Streams' `KafkaStreams.State`, one series per state,
//! 1 for the current one) and its stream threads, alive and failed.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};

use prometheus::{IntCounterVec, IntGaugeVec};

use super::{counter, gauge};

static STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "eddy_client_state",
        "The application's state: 1 on the series of the current one.",
        &["application", "state"],
    )
});

static ALIVE_THREADS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "eddy_alive_stream_threads",
        "Stream threads running now.",
        &["application"],
    )
});

static FAILED_THREADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "eddy_failed_stream_threads_total",
        "Stream threads that stopped on an error.",
        &["application"],
    )
});

/// The states, as Kafka Streams names them.
const STATES: [&str; 6] = [
    "created",
    "rebalancing",
    "running",
    "pending_shutdown",
    "not_running",
    "error",
];

pub(crate) fn touch(application: &str) {
    ALIVE_THREADS.with_label_values(&[application]);
    FAILED_THREADS.with_label_values(&[application]);
}

/// What the client's state is derived from; shared by its threads.
#[derive(Debug)]
pub(crate) struct ClientMetrics {
    application: String,
    rebalancing: AtomicI64,
    alive: AtomicI64,
    /// 0 starting, 1 started, 2 closing, 3 closed.
    phase: AtomicU8,
    failed: AtomicI64,
    /// Held from reading the counters to setting the gauges: two threads publishing at once
    /// must not leave the older picture.
    publishing: parking_lot::Mutex<()>,
}

impl ClientMetrics {
    pub fn new(application: &str) -> Arc<Self> {
        super::touch(application);
        let metrics = Arc::new(Self {
            application: application.to_string(),
            rebalancing: AtomicI64::new(0),
            alive: AtomicI64::new(0),
            phase: AtomicU8::new(0),
            failed: AtomicI64::new(0),
            publishing: parking_lot::Mutex::new(()),
        });
        metrics.publish();
        metrics
    }

    /// The state its counters say, by Kafka Streams' rules: a failed thread makes the client
    /// `error`; a thread inside a rebalance makes it `rebalancing`.
    pub fn state(&self) -> &'static str {
        match self.phase.load(Ordering::SeqCst) {
            0 => "created",
            2 => "pending_shutdown",
            3 if self.failed.load(Ordering::SeqCst) > 0 => "error",
            3 => "not_running",
            _ if self.failed.load(Ordering::SeqCst) > 0 => "error",
            _ if self.rebalancing.load(Ordering::SeqCst) > 0 => "rebalancing",
            _ => "running",
        }
    }

    fn publish(&self) {
        let _one_at_a_time = self.publishing.lock();
        let now = self.state();
        for state in STATES {
            STATE
                .with_label_values(&[self.application.as_str(), state])
                .set(i64::from(state == now));
        }
        ALIVE_THREADS
            .with_label_values(&[self.application.as_str()])
            .set(self.alive.load(Ordering::SeqCst));
    }

    pub fn started(&self) {
        self.phase.store(1, Ordering::SeqCst);
        self.publish();
    }

    pub fn closing(&self) {
        self.phase.store(2, Ordering::SeqCst);
        self.publish();
    }

    pub fn closed(&self) {
        self.phase.store(3, Ordering::SeqCst);
        self.publish();
    }

    pub fn thread_started(&self) {
        self.alive.fetch_add(1, Ordering::SeqCst);
        self.publish();
    }

    /// A thread stopped, `failed` when on an error.
    pub fn thread_stopped(&self, failed: bool) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
        if failed {
            self.failed.fetch_add(1, Ordering::SeqCst);
            FAILED_THREADS
                .with_label_values(&[self.application.as_str()])
                .inc();
        }
        self.publish();
    }

    /// A thread entered (`true`) or left a rebalance callback.
    pub fn rebalancing(&self, inside: bool) {
        self.rebalancing
            .fetch_add(if inside { 1 } else { -1 }, Ordering::SeqCst);
        self.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_threads_and_rebalances() {
        let m = ClientMetrics::new("client-metrics-test");
        assert_eq!(m.state(), "created");
        m.started();
        m.thread_started();
        m.thread_started();
        assert_eq!(m.state(), "running");
        m.rebalancing(true);
        assert_eq!(m.state(), "rebalancing");
        m.rebalancing(false);
        assert_eq!(m.state(), "running");
        m.thread_stopped(true);
        assert_eq!(m.state(), "error");
        let text = crate::metrics::render_metrics().unwrap();
        assert!(text
            .contains("eddy_client_state{application=\"client-metrics-test\",state=\"error\"} 1"));
        assert!(text.contains("eddy_alive_stream_threads{application=\"client-metrics-test\"} 1"));
        assert!(text
            .contains("eddy_failed_stream_threads_total{application=\"client-metrics-test\"} 1"));
        m.closing();
        m.closed();
        assert_eq!(m.state(), "error");
    }
}
