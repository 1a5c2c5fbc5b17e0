//! The application's lifecycle, as Kafka Streams has it: a state ([`StreamsState`]) with a
//! listener told of every change, and an uncaught-error handler that decides what happens when
//! a stream thread stops on an error it cannot rewind from (Kafka Streams'
//! `StreamsUncaughtExceptionHandler`).
//!
//! 1. **Created** until `start` has started the threads, then **Running**; **Rebalancing**
//!    while a thread is inside a rebalance.
//! 2. A thread that stops on an error (a record that fails under `log_and_fail`, a panic in
//!    user code) has already closed its tasks dirty: nothing of the failing round is
//!    committed. The handler then answers:
//!    - **replace thread**: a new stream thread takes its place in the group and resumes its
//!      tasks from their last commit;
//!    - **shutdown client** (the default): every thread of this instance closes, the state
//!      goes **PendingError**, then **Error** once they have stopped;
//!    - **shutdown application**: the same, after asking every other instance of the
//!      application to do the same (`shutdown_requests.rs`).
//! 3. `close` goes **PendingShutdown**, then **NotRunning** (or stays **Error**).

use std::sync::Arc;

use crate::error::EngineError;

/// The state of an application instance (Kafka Streams' `KafkaStreams.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamsState {
    Created,
    Rebalancing,
    Running,
    PendingShutdown,
    NotRunning,
    PendingError,
    Error,
}

impl StreamsState {
    /// Every state, in the order of the module doc.
    pub const ALL: [StreamsState; 7] = [
        StreamsState::Created,
        StreamsState::Rebalancing,
        StreamsState::Running,
        StreamsState::PendingShutdown,
        StreamsState::NotRunning,
        StreamsState::PendingError,
        StreamsState::Error,
    ];

    /// The state's name as metrics and the console show it (`pending_shutdown`).
    pub fn name(self) -> &'static str {
        match self {
            StreamsState::Created => "created",
            StreamsState::Rebalancing => "rebalancing",
            StreamsState::Running => "running",
            StreamsState::PendingShutdown => "pending_shutdown",
            StreamsState::NotRunning => "not_running",
            StreamsState::PendingError => "pending_error",
            StreamsState::Error => "error",
        }
    }

    /// Whether the instance processes (or will again, after the rebalance).
    pub fn is_running_or_rebalancing(self) -> bool {
        matches!(self, StreamsState::Running | StreamsState::Rebalancing)
    }
}

impl std::fmt::Display for StreamsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to do when a stream thread stops on an error (Kafka Streams'
/// `StreamThreadExceptionResponse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamThreadExceptionResponse {
    /// Start a new thread in its place; it resumes the tasks from their last commit.
    ReplaceThread,
    /// Stop every thread of this instance; the state becomes `Error`.
    ShutdownClient,
    /// Stop every instance of the application.
    ShutdownApplication,
}

/// Told `(new, old)` on every state change, on the thread that made it.
pub type StateListener = Arc<dyn Fn(StreamsState, StreamsState) + Send + Sync>;

/// Chooses the response to a stream thread's error.
pub type UncaughtExceptionHandler =
    Arc<dyn Fn(&EngineError) -> StreamThreadExceptionResponse + Send + Sync>;

/// The hooks an application is started with.
#[derive(Clone, Default)]
pub struct Lifecycle {
    pub(crate) state_listener: Option<StateListener>,
    pub(crate) uncaught_exception_handler: Option<UncaughtExceptionHandler>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("state_listener", &self.state_listener.is_some())
            .field(
                "uncaught_exception_handler",
                &self.uncaught_exception_handler.is_some(),
            )
            .finish()
    }
}

impl Lifecycle {
    /// The handler's answer to `error`; without a handler, shut down the client.
    pub(crate) fn respond(&self, error: &EngineError) -> StreamThreadExceptionResponse {
        match &self.uncaught_exception_handler {
            Some(handler) => handler(error),
            None => StreamThreadExceptionResponse::ShutdownClient,
        }
    }
}

/// A panic's message, for the error that replaces it.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// What a stream thread's supervisor acts on.
pub(crate) struct Supervisor {
    pub lifecycle: Lifecycle,
    pub shutdown: Arc<std::sync::atomic::AtomicBool>,
    pub client: Arc<crate::metrics::client::ClientMetrics>,
    /// The first error that stopped the instance.
    pub failure: Arc<parking_lot::Mutex<Option<String>>>,
    pub requests: Option<Arc<super::shutdown_requests::ShutdownRequests>>,
}

/// How long a replaced thread waits before its successor starts (a thread that fails at once,
/// a broker that refuses it, must not spin).
const REPLACE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

impl Supervisor {
    /// Runs stream thread `spec` (step 2 of the module doc), replacing it as the handler says,
    /// until the application closes or an error shuts the instance down.
    pub fn run(&self, spec: super::stream_thread::ThreadSpec) -> crate::error::Result<()> {
        /// Counts the thread alive until its last successor stops.
        struct Alive<'a>(&'a crate::metrics::client::ClientMetrics);
        impl Drop for Alive<'_> {
            fn drop(&mut self) {
                self.0.thread_stopped();
            }
        }
        self.client.thread_started();
        let _alive = Alive(&self.client);
        self.supervise(spec)
    }

    fn supervise(&self, spec: super::stream_thread::ThreadSpec) -> crate::error::Result<()> {
        use std::sync::atomic::Ordering;
        loop {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                super::stream_thread::run(spec.clone())
            }))
            .unwrap_or_else(|panic| {
                Err(EngineError::processing(
                    format!("stream thread {}", spec.index),
                    format!("panicked: {}", panic_message(panic.as_ref())),
                ))
            });
            let Err(error) = outcome else {
                return Ok(());
            };
            if self.shutdown.load(Ordering::SeqCst) {
                return Err(error);
            }
            let response = self.lifecycle.respond(&error);
            tracing::error!(
                thread = spec.index,
                ?response,
                "stream thread stopped: {error}"
            );
            match response {
                StreamThreadExceptionResponse::ReplaceThread => {
                    let until = std::time::Instant::now() + REPLACE_BACKOFF;
                    while std::time::Instant::now() < until {
                        if self.shutdown.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    continue;
                }
                StreamThreadExceptionResponse::ShutdownClient => {}
                StreamThreadExceptionResponse::ShutdownApplication => {
                    if let Some(requests) = &self.requests {
                        requests.request(&error.to_string());
                    }
                }
            }
            self.failure.lock().get_or_insert_with(|| error.to_string());
            self.client.failing();
            self.shutdown.store(true, Ordering::SeqCst);
            return Err(error);
        }
    }
}
