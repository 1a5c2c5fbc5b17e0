//! The Kafka runtime: stream threads that consume a topology's input through a consumer group,
//! run its tasks, and write outputs, changelogs and offsets, exactly once (EOS-v2) or at least
//! once. `KafkaStreams::start` runs N threads in this process; run the binary N times to spread
//! the partitions over processes.

mod changelog_reader;
mod clients;
mod fetched_lag;
mod internal_topics;
mod lag;
pub(crate) mod lifecycle;
mod rebalance_listener;
mod shutdown_requests;
mod standby;
mod state_directory;
mod statistics;
pub(crate) mod status;
mod stream_thread;
mod streams_producer;
mod task_manager;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::StreamsConfig;
use crate::error::{EngineError, Result};
use crate::topology::Topology;

pub use internal_topics::DLQ_TOPIC;
pub use lifecycle::{
    Lifecycle, StateListener, StreamThreadExceptionResponse, StreamsState, UncaughtExceptionHandler,
};

/// Settings of a runtime: the streams config plus how to reach Kafka.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub streams: StreamsConfig,
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// The state listener and the uncaught-error handler.
    pub lifecycle: Lifecycle,
}

impl RuntimeConfig {
    /// A runtime config for `streams` against `bootstrap_servers`.
    pub fn new(streams: StreamsConfig, bootstrap_servers: impl Into<String>) -> Self {
        Self {
            streams,
            bootstrap_servers: bootstrap_servers.into(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// Tells `listener` `(new, old)` on every change of the application's state.
    pub fn with_state_listener(
        mut self,
        listener: impl Fn(StreamsState, StreamsState) + Send + Sync + 'static,
    ) -> Self {
        self.lifecycle.state_listener = Some(std::sync::Arc::new(listener));
        self
    }

    /// Asks `handler` what to do when a stream thread stops on an error (without one: shut
    /// down this instance, Kafka Streams' default).
    pub fn with_uncaught_exception_handler(
        mut self,
        handler: impl Fn(&EngineError) -> StreamThreadExceptionResponse + Send + Sync + 'static,
    ) -> Self {
        self.lifecycle.uncaught_exception_handler = Some(std::sync::Arc::new(handler));
        self
    }
}

/// Counters a running application keeps, for progress output and tests.
#[derive(Debug, Default)]
pub struct Progress {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dead_letters: AtomicU64,
    pub restored: AtomicU64,
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    /// Input partitions the application's threads hold now.
    pub assigned_partitions: AtomicU64,
    /// Records in those partitions not read yet (updated every second; see `runtime/lag.rs`).
    pub lag: AtomicU64,
    /// Running tasks closed (by rebalances, rewinds and shutdown): with cooperative
    /// rebalancing, only the tasks whose partitions moved close.
    pub tasks_closed: AtomicU64,
    /// Changelog records the standby tasks have written (`num.standby.replicas`).
    pub standby_records: AtomicU64,
}

impl Progress {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A query directory that is closed unless it was taken (start failed half-way).
struct CloseOnDrop(Option<Arc<crate::query::QueryDirectory>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(directory) = self.0.take() {
            directory.close();
        }
    }
}

/// A running application.
pub struct KafkaStreams {
    threads: Vec<JoinHandle<Result<()>>>,
    /// Keeps the standby tasks (`num.standby.replicas` > 0).
    standby_updater: Option<JoinHandle<()>>,
    standbys: Arc<standby::StandbyRegistry>,
    shutdown: Arc<AtomicBool>,
    progress: Arc<Progress>,
    client: Arc<crate::metrics::client::ClientMetrics>,
    /// Kept for as long as the application runs: `/metrics` reads it weakly.
    _scrape: Arc<crate::metrics::scrape::ScrapeSource>,
    /// Its tasks, restoring or running (what the console lists).
    status: Arc<status::RuntimeStatus>,
    queries: crate::query::StateQueries,
    directory: Option<Arc<crate::query::QueryDirectory>>,
    requests: Arc<shutdown_requests::ShutdownRequests>,
    /// The error that stopped the instance on its own, if one did.
    failure: Arc<parking_lot::Mutex<Option<String>>>,
    topology: Arc<Topology>,
    application_id: String,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl KafkaStreams {
    /// Checks the input topics, creates the internal ones and starts `num.stream.threads`
    /// threads. A missing input topic or partition counts that differ among co-partitioned
    /// sources are clear errors here, not hangs.
    pub fn start(topology: Topology, config: RuntimeConfig) -> Result<Self> {
        // One builder for the clients of the start (the threads' task managers make their own).
        let clients = clients::KafkaClients::new(&config, &topology);
        clients.check()?;
        let state_directory = Arc::new(state_directory::StateDirectory::open(
            &config.streams.state_dir,
            &config.streams.application_id,
        )?);
        let store_partitions = internal_topics::prepare(&topology, &config)?;
        let topology = Arc::new(topology);
        let shutdown = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        // One cache and one uncommitted-writes budget for every thread's tasks.
        let memory = crate::task::StateMemory::from_config(&config.streams);
        let queryable = Arc::new(crate::query::QueryableStores::default());
        queryable.set_partition_counts(store_partitions);
        let app = config.streams.application_id.as_str();
        let client = crate::metrics::client::ClientMetrics::new(
            app,
            config.lifecycle.state_listener.clone(),
        );
        let failure = Arc::new(parking_lot::Mutex::new(None));
        let requests = {
            let (client, shutdown, failure) = (
                Arc::clone(&client),
                Arc::clone(&shutdown),
                Arc::clone(&failure),
            );
            shutdown_requests::ShutdownRequests::start(
                Topology::shutdown_requests_topic(app),
                state_directory.process_id().to_string(),
                clients.plain_producer()?,
                clients.shutdown_requests_consumer()?,
                move |reason| {
                    tracing::error!("shutting down: {reason}");
                    failure.lock().get_or_insert(reason);
                    client.failing();
                    shutdown.store(true, Ordering::SeqCst);
                },
            )?
        };
        let supervisor = Arc::new(lifecycle::Supervisor {
            lifecycle: config.lifecycle.clone(),
            shutdown: Arc::clone(&shutdown),
            client: Arc::clone(&client),
            failure: Arc::clone(&failure),
            requests: Some(Arc::clone(&requests)),
        });
        let scrape = crate::metrics::scrape::ScrapeSource::register(app, &queryable);
        let status = Arc::new(status::RuntimeStatus::default());
        let standbys = Arc::new(standby::StandbyRegistry::new(Arc::clone(&status)));
        let directory = match &config.streams.application_server {
            Some(server) => Some(crate::query::QueryDirectory::start(
                server.clone(),
                Topology::query_endpoints_topic(&config.streams.application_id),
                Arc::clone(&queryable),
                clients.plain_producer()?,
                clients.directory_consumer()?,
            )?),
            None => None,
        };
        // Should a thread not start, the directory stops too (publishing its tombstone).
        let mut directory = CloseOnDrop(directory);
        // Before the threads: should it not start, nothing has processed yet.
        let standby_updater = if config.streams.num_standby_replicas > 0 {
            Some(standby::start(standby::StandbySpec {
                topology: Arc::clone(&topology),
                config: config.clone(),
                process_id: state_directory.process_id().to_string(),
                shutdown: Arc::clone(&shutdown),
                progress: Arc::clone(&progress),
                memory: memory.clone(),
                status: Arc::clone(&status),
                registry: Arc::clone(&standbys),
            })?)
        } else {
            None
        };
        let mut threads = Vec::new();
        let stop_all = Arc::clone(&shutdown);
        for index in 0..config.streams.num_stream_threads {
            let (topology, config, shutdown, progress, state_directory, memory, queryable) = (
                Arc::clone(&topology),
                config.clone(),
                Arc::clone(&shutdown),
                Arc::clone(&progress),
                Arc::clone(&state_directory),
                memory.clone(),
                Arc::clone(&queryable),
            );
            let (client, scrape, status, supervisor, standbys) = (
                Arc::clone(&client),
                Arc::clone(&scrape),
                Arc::clone(&status),
                Arc::clone(&supervisor),
                Arc::clone(&standbys),
            );
            let handle = std::thread::Builder::new()
                .name(format!("{}-stream-{index}", config.streams.application_id))
                .spawn(move || {
                    supervisor.run(stream_thread::ThreadSpec {
                        index,
                        topology,
                        config,
                        process_id: state_directory.process_id().to_string(),
                        shutdown,
                        progress,
                        memory,
                        queryable,
                        client,
                        scrape,
                        status,
                        standbys,
                    })
                })
                .map_err(|e| {
                    // The threads (and the standby updater) started so far stop.
                    stop_all.store(true, Ordering::SeqCst);
                    EngineError::Config {
                        key: "num.stream.threads".into(),
                        reason: e.to_string(),
                    }
                })?;
            threads.push(handle);
        }
        client.started();
        let queries = crate::query::StateQueries::new(
            Arc::clone(&topology),
            config.streams.application_id.clone(),
            queryable,
            directory.0.clone(),
            Arc::new(crate::console::LiveApp {
                topology: Arc::clone(&topology),
                progress: Arc::clone(&progress),
                client: Arc::clone(&client),
                scrape: Arc::clone(&scrape),
                status: Arc::clone(&status),
                server: config.streams.application_server.clone(),
            }),
        );
        Ok(Self {
            threads,
            standby_updater,
            standbys,
            shutdown,
            progress,
            client,
            _scrape: scrape,
            status,
            queries,
            directory: directory.0.take(),
            requests,
            failure,
            topology,
            application_id: config.streams.application_id.clone(),
        })
    }

    /// The application's state now.
    pub fn state(&self) -> StreamsState {
        self.client.state()
    }

    /// The error that stopped this instance on its own (a thread's, or another instance's
    /// request to shut the application down), if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// Queries of the application's state held by this instance (see `query/mod.rs`).
    pub fn queries(&self) -> crate::query::StateQueries {
        self.queries.clone()
    }

    /// The application's counters.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// The tasks this instance keeps standby copies of now (`num.standby.replicas`), as
    /// `<sub-topology>_<partition>`.
    pub fn standby_tasks(&self) -> Vec<String> {
        self.standbys
            .standby_tasks()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Tasks restoring their stores now.
    pub fn restoring_tasks(&self) -> usize {
        self.status.restoring()
    }

    /// Records the restoring tasks have still to restore.
    pub fn restore_remaining(&self) -> u64 {
        let app = self.application_id.as_str();
        self.status
            .tasks()
            .iter()
            .map(|t| crate::metrics::restore_remaining(app, &self.topology, t).max(0) as u64)
            .sum()
    }

    /// Whether every thread is still running.
    pub fn is_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    /// Stops: each thread commits (or aborts) its open transaction, closes its tasks and leaves
    /// the group. Returns the first thread error.
    pub fn close(self) -> Result<()> {
        self.client.closing();
        self.shutdown.store(true, Ordering::SeqCst);
        let mut first = Ok(());
        for t in self.threads {
            let result = t
                .join()
                .unwrap_or_else(|_| Err(EngineError::Topology("a stream thread panicked".into())));
            if first.is_ok() {
                first = result;
            }
        }
        // The updater closes its standbys as soon as it sees `shutdown`; a claim meanwhile waits.
        if let Some(updater) = self.standby_updater {
            let _ = updater.join();
        }
        if let Some(directory) = &self.directory {
            // After the threads: their tasks are closed, so the tombstone is the truth.
            directory.close();
        }
        self.requests.close();
        self.client.closed();
        first
    }
}
