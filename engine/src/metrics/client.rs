//! The client's metrics: its state (Kafka Streams' `KafkaStreams.State`, one series per state,
//! 1 for the current one) and its stream threads, alive and failed. The state itself is kept
//! here too, and the state listener told of each change (`runtime/lifecycle.rs`).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};

use prometheus::{IntCounterVec, IntGaugeVec};

use super::{counter, gauge};
use crate::runtime::lifecycle::{StateListener, StreamsState};

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

pub(crate) fn touch(application: &str) {
    ALIVE_THREADS.with_label_values(&[application]);
    FAILED_THREADS.with_label_values(&[application]);
}

/// What the client's state is derived from; shared by its threads.
pub(crate) struct ClientMetrics {
    application: String,
    rebalancing: AtomicI64,
    alive: AtomicI64,
    /// 0 starting, 1 started, 2 closing, 3 closed.
    phase: AtomicU8,
    /// Set when a thread's error shuts the instance down (`PendingError`, then `Error`).
    failing: AtomicBool,
    /// Held from reading the counters to setting the gauges and telling the listener: two
    /// threads publishing at once must not leave the older picture. Holds the last state.
    publishing: parking_lot::Mutex<StreamsState>,
    listener: Option<StateListener>,
}

impl std::fmt::Debug for ClientMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetrics")
            .field("application", &self.application)
            .field("state", &self.state())
            .finish()
    }
}

impl ClientMetrics {
    pub fn new(application: &str, listener: Option<StateListener>) -> Arc<Self> {
        super::touch(application);
        let metrics = Arc::new(Self {
            application: application.to_string(),
            rebalancing: AtomicI64::new(0),
            alive: AtomicI64::new(0),
            phase: AtomicU8::new(0),
            failing: AtomicBool::new(false),
            publishing: parking_lot::Mutex::new(StreamsState::Created),
            listener,
        });
        metrics.publish();
        metrics
    }

    /// The state its counters say, by Kafka Streams' rules: an error that shuts the instance
    /// down makes it `pending_error` until its threads have stopped, then `error`; a thread
    /// inside a rebalance makes it `rebalancing`.
    pub fn state(&self) -> StreamsState {
        let phase = self.phase.load(Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return if self.alive.load(Ordering::SeqCst) > 0 && phase < 3 {
                StreamsState::PendingError
            } else {
                StreamsState::Error
            };
        }
        match phase {
            0 => StreamsState::Created,
            2 => StreamsState::PendingShutdown,
            3 => StreamsState::NotRunning,
            _ if self.rebalancing.load(Ordering::SeqCst) > 0 => StreamsState::Rebalancing,
            _ => StreamsState::Running,
        }
    }

    fn publish(&self) {
        let mut last = self.publishing.lock();
        let now = self.state();
        for state in StreamsState::ALL {
            STATE
                .with_label_values(&[self.application.as_str(), state.name()])
                .set(i64::from(state == now));
        }
        if *last != now {
            tracing::debug!(application = %self.application, from = %*last, to = %now, "state");
            if let Some(listener) = &self.listener {
                listener(now, *last);
            }
            *last = now;
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

    /// A thread's error shuts the instance down.
    pub fn failing(&self) {
        self.failing.store(true, Ordering::SeqCst);
        self.publish();
    }

    /// A thread (with the successors that replaced it) stopped.
    pub fn thread_stopped(&self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
        self.publish();
    }

    /// A thread stopped on an error (it may be replaced).
    pub fn thread_failed(&self) {
        FAILED_THREADS
            .with_label_values(&[self.application.as_str()])
            .inc();
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
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let listener: StateListener = {
            let seen = Arc::clone(&seen);
            Arc::new(move |new, old| seen.lock().push((old, new)))
        };
        let m = ClientMetrics::new("client-metrics-test", Some(listener));
        assert_eq!(m.state(), StreamsState::Created);
        m.started();
        m.thread_started();
        m.thread_started();
        assert_eq!(m.state(), StreamsState::Running);
        m.rebalancing(true);
        assert_eq!(m.state(), StreamsState::Rebalancing);
        m.rebalancing(false);
        assert_eq!(m.state(), StreamsState::Running);
        m.thread_failed();
        assert_eq!(
            m.state(),
            StreamsState::Running,
            "a failed thread alone (replaced) is no error"
        );
        m.thread_stopped();
        m.failing();
        assert_eq!(m.state(), StreamsState::PendingError);
        m.thread_stopped();
        assert_eq!(m.state(), StreamsState::Error);
        let text = crate::metrics::render_metrics().unwrap();
        assert!(text
            .contains("eddy_client_state{application=\"client-metrics-test\",state=\"error\"} 1"));
        assert!(text.contains("eddy_alive_stream_threads{application=\"client-metrics-test\"} 0"));
        assert!(text
            .contains("eddy_failed_stream_threads_total{application=\"client-metrics-test\"} 1"));
        m.closing();
        m.closed();
        assert_eq!(m.state(), StreamsState::Error);
        use StreamsState::*;
        assert_eq!(
            *seen.lock(),
            vec![
                (Created, Running),
                (Running, Rebalancing),
                (Rebalancing, Running),
                (Running, PendingError),
                (PendingError, Error),
            ]
        );
    }
}
