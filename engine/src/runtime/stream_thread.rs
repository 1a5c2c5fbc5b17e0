//! A stream thread (Kafka Streams' `StreamThread`): the poll loop of one consumer in the
//! application's group. The thread owns nothing but the loop; its tasks and producer belong to
//! its [`TaskManager`], and rebalances reach that through the [`RebalanceListener`].
//!
//! 1. **Created**: the task manager and its producer exist (under exactly-once its
//!    `init_transactions` has fenced an earlier incarnation of this thread); the consumer
//!    subscribes to the topology's source topics.
//! 2. **Running**: each round polls up to a batch of records into their tasks' buffers, then
//!    runs what is ready (in timestamp order across a task's partitions) through the tasks.
//!    A poll may run the rebalance listener first: **partitions revoked** (the task manager
//!    commits and closes their tasks, or aborts them when the partitions were lost), then
//!    **partitions assigned** (it opens their tasks and pauses their partitions) — the loop
//!    goes on in Running once the callback returns, and restores those tasks a slice per round
//!    before they process.
//! 3. After the batch: wall-clock punctuation, then a commit when `commit.interval.ms` passed or
//!    a cache is full. A failed commit is rewound (abort, reopen from checkpoints, seek back to
//!    the committed offsets); a failure to open tasks is retried the same way.
//! 4. **Pending shutdown**: on `close`, the task manager commits (or aborts) and closes clean;
//!    on an error that cannot be rewound (a record that fails under `log_and_fail`, a producer
//!    that cannot be replaced) it closes dirty: the open transaction is aborted and nothing the
//!    failing round did is committed, not even by the revocation when the consumer leaves.
//! 5. **Dead**: the consumer has left the group; the thread returns its outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::error::{EngineError, Result};
use crate::metrics::thread::observe_since;
use crate::runtime::fetched_lag::PartitionEnds;
use crate::runtime::lag::InputLag;
use crate::runtime::rebalance_listener::RebalanceListener;
use crate::runtime::statistics::StatisticsParser;
use crate::runtime::streams_producer::CommitError;
use crate::runtime::task_manager::{rewinds, TaskManager};
use crate::runtime::{Progress, RuntimeConfig};
use crate::topology::Topology;

/// Records fetched per round before they are processed, punctuation runs and a commit may
/// follow.
const MAX_RECORDS_PER_ROUND: usize = 1_000;

/// Where a stream thread is (step numbers of the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadState {
    /// Step 1.
    Created,
    /// Step 2 and 3 (rebalances happen inside a poll).
    Running,
    /// Step 4.
    PendingShutdown,
    /// Step 5.
    Dead,
}

impl ThreadState {
    fn can_become(self, next: ThreadState) -> bool {
        use ThreadState::*;
        matches!(
            (self, next),
            (Created, Running | PendingShutdown)
                | (Running, PendingShutdown)
                | (PendingShutdown, Dead)
        )
    }
}

struct StreamThread {
    index: usize,
    state: ThreadState,
    task_manager: Arc<Mutex<TaskManager>>,
    consumer: BaseConsumer<RebalanceListener>,
    shutdown: Arc<AtomicBool>,
    commit_every: Duration,
    poll_seconds: prometheus::Histogram,
}

impl StreamThread {
    fn set_state(&mut self, next: ThreadState) {
        debug_assert!(self.state.can_become(next), "{:?} -> {next:?}", self.state);
        tracing::debug!(thread = self.index, from = ?self.state, to = ?next, "stream thread state");
        self.state = next;
    }

    /// Step 2 and 3 until the application closes or an error stops the thread.
    fn run_loop(&mut self) -> Result<()> {
        let mut last_commit = Instant::now();
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                return Ok(());
            }
            self.restore_round()?;
            self.process_round()?;
            let mut tasks = self.task_manager.lock();
            tasks.poll_producer();
            let punctuating = Instant::now();
            let punctuated = tasks.punctuate();
            observe_since(&tasks.metrics.punctuate, punctuating);
            if let Err(e) = punctuated {
                self.handle_processing_error(&mut tasks, e)?;
                continue;
            }
            if last_commit.elapsed() >= self.commit_every || tasks.needs_commit() {
                last_commit = Instant::now();
                let result = tasks.commit(&self.consumer);
                observe_since(&tasks.metrics.commit, last_commit);
                if last_commit.elapsed() > Duration::from_millis(500) {
                    tracing::warn!(elapsed = ?last_commit.elapsed(), "slow commit");
                }
                if let Err(e) = result {
                    tasks.recover_or_retry(&self.consumer, e)?;
                }
            }
        }
    }

    /// A slice of restoring (`task_manager/restoring.rs`); a restore that failed rewinds and
    /// registers the tasks again, as a failure to open them does.
    fn restore_round(&mut self) -> Result<()> {
        let mut tasks = self.task_manager.lock();
        if let Err(e) = tasks.restore_step(&self.consumer) {
            // A restore cut short by closing is no failure: the loop closes next.
            if !self.shutdown.load(Ordering::SeqCst) {
                tasks.retry_opening_tasks(&self.consumer, e)?;
            }
        }
        Ok(())
    }

    /// Polls and processes up to a batch of records. The task manager's lock is released
    /// around each poll, since a rebalance callback inside the poll takes it.
    fn process_round(&mut self) -> Result<()> {
        let polling = Instant::now();
        let polled = self.poll_round();
        observe_since(&self.poll_seconds, polling);
        if !polled? {
            return Ok(());
        }
        let processing = Instant::now();
        let mut tasks = self.task_manager.lock();
        let processed = match tasks.process_buffered(&self.consumer) {
            Ok(()) => Ok(()),
            Err(e) => self.handle_processing_error(&mut tasks, e),
        };
        observe_since(&tasks.metrics.process, processing);
        processed
    }

    /// Polls up to a batch of records into their tasks' buffers. Returns whether to process
    /// them (not after a failure the poll met, which has rewound or is closing the tasks).
    fn poll_round(&mut self) -> Result<bool> {
        // While a task restores, the loop comes back to it at once.
        let first_wait = if self.task_manager.lock().is_restoring() {
            Duration::ZERO
        } else {
            Duration::from_millis(20)
        };
        for n in 0..MAX_RECORDS_PER_ROUND {
            let message = self
                .consumer
                .poll(if n == 0 { first_wait } else { Duration::ZERO });
            let mut tasks = self.task_manager.lock();
            if let Some(e) = tasks.take_failure() {
                // A restore cut short by closing is no failure: the loop closes next.
                if !self.shutdown.load(Ordering::SeqCst) {
                    tasks.retry_opening_tasks(&self.consumer, e)?;
                }
                return Ok(false);
            }
            match message {
                Some(Ok(m)) => {
                    if let Err(e) = tasks.add_record(&self.consumer, &m) {
                        return self.handle_processing_error(&mut tasks, e).map(|()| false);
                    }
                }
                // librdkafka's fatal errors (a static member fenced by a newer one with its
                // `group.instance.id`) end the consumer: the thread stops.
                Some(Err(e @ rdkafka::error::KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(EngineError::kafka_fatal("the main consumer", e));
                }
                Some(Err(e)) => {
                    tracing::debug!("poll: {e}");
                    break;
                }
                None => break,
            }
        }
        Ok(true)
    }

    /// A record that could not be processed: an error that rewinds (a lost producer, say) aborts
    /// and reopens the tasks; any other stops the thread.
    fn handle_processing_error(&self, tasks: &mut TaskManager, error: EngineError) -> Result<()> {
        if !rewinds(&error) {
            return Err(error);
        }
        tasks.recover_or_retry(&self.consumer, CommitError::aborted(error.to_string()))
    }
}

/// What a stream thread is given by its application.
#[derive(Clone)]
pub(crate) struct ThreadSpec {
    pub index: usize,
    pub topology: Arc<Topology>,
    pub config: RuntimeConfig,
    /// This instance's id, kept in its state directory: part of the transactional ids.
    pub process_id: String,
    /// Set when the application closes.
    pub shutdown: Arc<AtomicBool>,
    pub progress: Arc<Progress>,
    /// The instance's memory budgets, shared with the other threads.
    pub memory: crate::task::StateMemory,
    /// Where the thread's running tasks make their stores queryable.
    pub queryable: Arc<crate::query::QueryableStores>,
    /// The client's state and thread counts (`/metrics`).
    pub client: Arc<crate::metrics::client::ClientMetrics>,
    /// Where the gauges `/metrics` reads at a scrape come from.
    pub scrape: Arc<crate::metrics::scrape::ScrapeSource>,
    /// The tasks and dead letters the console shows.
    pub status: Arc<crate::runtime::status::RuntimeStatus>,
    /// Which tasks the instance runs and keeps standbys of.
    pub standbys: Arc<crate::runtime::standby::StandbyRegistry>,
}

/// Runs a stream thread until `shutdown` or an error.
pub(crate) fn run(spec: ThreadSpec) -> Result<()> {
    /// Counts the thread failed however it fails (a panicking processor included); the
    /// supervisor counts it alive (`lifecycle.rs`).
    struct Stopped(Arc<crate::metrics::client::ClientMetrics>, bool);
    impl Drop for Stopped {
        fn drop(&mut self) {
            if self.1 || std::thread::panicking() {
                self.0.thread_failed();
            }
        }
    }
    let mut stopped = Stopped(Arc::clone(&spec.client), false);
    let outcome = run_thread(spec);
    stopped.1 = outcome.is_err();
    outcome
}

fn run_thread(spec: ThreadSpec) -> Result<()> {
    let ThreadSpec {
        index,
        topology,
        config,
        shutdown,
        progress,
        client,
        scrape,
        ..
    } = spec.clone();
    let process_id = spec.process_id.clone();
    let app = config.streams.application_id.clone();
    let commit_every = Duration::from_millis(config.streams.commit_interval_ms);
    let eos = config.streams.processing_guarantee == crate::ProcessingGuarantee::ExactlyOnceV2;
    let ends = Arc::new(PartitionEnds::new(eos));
    let task_manager = Arc::new(Mutex::new(TaskManager::new(spec, Arc::clone(&ends))));
    let consumer_config = {
        let mut tasks = task_manager.lock();
        tasks.producer()?;
        tasks
            .clients()
            .main_consumer_config_of(index, Some(&process_id))
    };
    let consumer: BaseConsumer<RebalanceListener> = consumer_config
        .create_with_context(RebalanceListener {
            task_manager: Arc::clone(&task_manager),
            statistics: StatisticsParser::start(
                index,
                InputLag::new(Arc::clone(&progress), eos).with_scrape(scrape, index),
                ends,
            )
            .map_err(|e| EngineError::Config {
                key: "num.stream.threads".into(),
                reason: format!("cannot start a statistics thread: {e}"),
            })?,
            client,
            rebalancing: std::sync::atomic::AtomicBool::new(false),
        })
        .map_err(|e| EngineError::Config {
            key: "bootstrap.servers".into(),
            reason: e.to_string(),
        })?;
    let sources: Vec<String> = topology
        .subtopologies()
        .iter()
        .flat_map(|s| {
            s.source_topics
                .iter()
                .map(|t| topology.physical_topic(&app, t))
        })
        .collect();
    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    consumer.subscribe(&refs).map_err(|e| EngineError::Config {
        key: "application.id".into(),
        reason: e.to_string(),
    })?;
    let poll_seconds = task_manager.lock().metrics.poll.clone();
    let mut thread = StreamThread {
        index,
        state: ThreadState::Created,
        task_manager,
        consumer,
        shutdown,
        commit_every,
        poll_seconds,
    };
    thread.set_state(ThreadState::Running);
    // A panic in user code must close dirty like any other error: unwinding past the consumer
    // would drop it, and its revocation would commit the failing round's partial work.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread.run_loop()))
        .unwrap_or_else(|panic| {
            Err(EngineError::processing(
                format!("stream thread {index}"),
                format!(
                    "panicked: {}",
                    crate::runtime::lifecycle::panic_message(panic.as_ref())
                ),
            ))
        });
    thread.set_state(ThreadState::PendingShutdown);
    match &outcome {
        Ok(()) => {
            // A panic in the final flush must not unwind past the consumer either.
            let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                thread.task_manager.lock().close_clean(&thread.consumer)
            }));
            if closed.is_err() {
                tracing::error!(thread = index, "closing panicked: closing dirty");
                thread.task_manager.lock().close_dirty();
            }
        }
        Err(e) => {
            tracing::error!(thread = index, "stream thread stopped: {e}");
            thread.task_manager.lock().close_dirty();
        }
    }
    thread.set_state(ThreadState::Dead);
    // Dropping the consumer leaves the group (its revocation commits nothing after a dirty close).
    drop(thread);
    outcome
}
