//! The embedded broker: a single-node Kafka-protocol server on tokio, with the wire protocol
//! from the `kafka-protocol` crate and fault injection, in the spirit of librdkafka's mock
//! cluster and Kafka Streams' embedded cluster; the broker of `eddy demo`, `eddy run` and
//! every test. `EmbeddedBroker::start()` listens on a random loopback port.
//!
//! ```no_run
//! let broker = eddy_broker::EmbeddedBroker::start().unwrap();
//! println!("bootstrap.servers={}", broker.bootstrap());
//! ```

mod api_fetch;
mod api_meta;
mod api_offsets;
mod api_produce;
mod compaction;
mod faults;
mod groups;
mod journal;
mod log;
mod security;
mod server;
mod state;
mod topic_config;
mod txn;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use thiserror::Error;
use tokio::sync::Notify;

use crate::state::ClusterState;

pub use security::TlsIdentity;

/// What can go wrong starting or running the broker.
#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the broker runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("invalid TLS identity: {0}")]
    Tls(String),
    #[error("cannot open the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Settings of the broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Create topics that clients ask for in Metadata (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (Kafka's `num.partitions`).
    pub default_partitions: i32,
    /// How often the log cleaner compacts `cleanup.policy=compact` topics; `None` (the default):
    /// only on [`EmbeddedBroker::compact_now`], so that tests counting records in a log see
    /// every record. The kill tests run with a background cleaner.
    pub compaction_interval: Option<Duration>,
    /// Where to keep data across restarts; `None`: in memory only.
    pub data_dir: Option<std::path::PathBuf>,
    /// TLS on the listener (Kafka's `SSL`, or `SASL_SSL` with `sasl_plain_users`).
    pub tls: Option<TlsIdentity>,
    /// SASL/PLAIN users, name to password (Kafka's `SASL_PLAINTEXT`, or `SASL_SSL` with
    /// `tls`); `None`: no authentication.
    pub sasl_plain_users: Option<BTreeMap<String, String>>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            auto_create_topics: true,
            default_partitions: 1,
            compaction_interval: None,
            data_dir: None,
            tls: None,
            sasl_plain_users: None,
        }
    }
}

/// Shared by every connection.
pub(crate) struct Shared {
    pub config: BrokerConfig,
    pub addr: SocketAddr,
    /// Read-locked by fetches, offset and metadata reads, so that they run side by side;
    /// write-locked by what changes it.
    pub state: RwLock<ClusterState>,
    pub groups: Mutex<groups::Groups>,
    /// Woken on every append, so that long-polling fetches return early.
    pub appended: Notify,
    pub faults: faults::Faults,
}

/// A running broker; it stops when dropped.
pub struct EmbeddedBroker {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts a broker on a random loopback port.
    pub fn start() -> Result<Self, BrokerError> {
        Self::start_with(BrokerConfig::default())
    }

    /// Starts a broker with `config`, on its own runtime threads.
    pub fn start_with(config: BrokerConfig) -> Result<Self, BrokerError> {
        let tls = config
            .tls
            .as_ref()
            .map(security::tls_acceptor)
            .transpose()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-broker")
            .enable_all()
            .build()
            .map_err(BrokerError::Runtime)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.listen))
            .map_err(|source| BrokerError::Bind {
                addr: config.listen.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
        let mut state = ClusterState::default();
        if let Some(dir) = &config.data_dir {
            let (journal, entries) =
                journal::Journal::open(dir).map_err(|source| BrokerError::DataDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            let replayed = entries.len();
            state.replay(entries);
            state.journal = Some(journal);
            txn::abort_open_after_restart(&mut state);
            tracing::info!(dir = %dir.display(), replayed, "restored the broker's data");
        }
        let shared = Arc::new(Shared {
            config,
            addr,
            state: RwLock::new(state),
            groups: Mutex::new(groups::Groups::default()),
            appended: Notify::new(),
            faults: faults::Faults::new(),
        });
        runtime.spawn(server::accept_loop(listener, Arc::clone(&shared), tls));
        runtime.spawn(groups::expire_sessions(Arc::clone(&shared)));
        runtime.spawn(txn::expire_transactions(Arc::clone(&shared)));
        if let Some(interval) = shared.config.compaction_interval {
            runtime.spawn(compaction::log_cleaner(Arc::clone(&shared), interval));
        }
        tracing::info!(%addr, "embedded Kafka-protocol broker listening");
        Ok(Self {
            shared,
            runtime: Some(runtime),
        })
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.shared.addr.to_string()
    }

    /// Stops answering: requests wait (connections stay open) until [`EmbeddedBroker::resume`].
    pub fn pause(&self) {
        self.shared.faults.paused.send_replace(true);
    }

    /// Answers again, including the requests that waited.
    pub fn resume(&self) {
        self.shared.faults.paused.send_replace(false);
    }

    /// Closes every open client connection (clients reconnect).
    pub fn drop_connections(&self) {
        self.shared.faults.connection_epoch.send_modify(|e| *e += 1);
    }

    /// Delays every request of `api_key` (a `kafka_protocol::messages::ApiKey` as i16) by `delay`.
    pub fn delay_requests(&self, api_key: i16, delay: Duration) {
        self.delay_next_requests(api_key, delay, None);
    }

    /// Delays the next `times` requests of `api_key` (all, with `None`) by `delay`.
    pub fn delay_next_requests(&self, api_key: i16, delay: Duration, times: Option<u32>) {
        self.shared
            .faults
            .rules
            .lock()
            .entry(api_key)
            .or_default()
            .delay = Some((delay, times));
    }

    /// Answers the next `times` requests of `api_key` (all, with `None`) with `error_code`.
    pub fn fail_requests(&self, api_key: i16, error_code: i16, times: Option<u32>) {
        self.shared
            .faults
            .rules
            .lock()
            .entry(api_key)
            .or_default()
            .fail = Some((error_code, times));
    }

    /// Rejects the next `times` produce requests that write to a topic whose name ends with
    /// `topic_suffix`, with `error_code` on each of its partitions; nothing of them is appended.
    /// Other topics in the same request are written as usual.
    pub fn reject_produce_to(&self, topic_suffix: &str, error_code: i16, times: u32) {
        self.shared.faults.produce_rejections.lock().push((
            topic_suffix.to_string(),
            error_code,
            times,
        ));
    }

    /// Removes every delay, failure and rejection rule.
    pub fn clear_faults(&self) {
        self.shared.faults.rules.lock().clear();
        self.shared.faults.produce_rejections.lock().clear();
    }

    /// (high watermark, last stable offset, producer ids with an open transaction) of a
    /// partition, for tests and debugging.
    pub fn partition_state(&self, topic: &str, partition: i32) -> Option<(i64, i64, Vec<i64>)> {
        let state = self.shared.state.read();
        let log = state.partition(topic, partition)?;
        Some((
            log.next_offset,
            log.last_stable_offset(),
            log.ongoing.keys().copied().collect(),
        ))
    }

    /// Compacts every `cleanup.policy=compact` topic now; returns the records removed.
    pub fn compact_now(&self) -> usize {
        compaction::compact_all(&self.shared)
    }

    /// Deletes the records of a partition below `before` (as DeleteRecords would); returns the
    /// new log start offset, `None` for an unknown partition.
    pub fn delete_records(&self, topic: &str, partition: i32, before: i64) -> Option<i64> {
        self.shared
            .state
            .write()
            .delete_records(topic, partition, before)
    }

    /// Creates a topic (as CreateTopics would); `false` if it exists.
    pub fn create_topic(&self, name: &str, partitions: i32) -> bool {
        self.create_topic_with_configs(name, partitions, &[])
    }

    /// Creates a topic with topic configs such as `cleanup.policy`; `false` if it exists.
    pub fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> bool {
        let configs = configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.shared
            .state
            .write()
            .create_topic(name, partitions, configs)
    }

    /// The configs a topic was created with (what DescribeConfigs reports as set), `None` for
    /// an unknown topic.
    pub fn topic_configs(&self, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
        let state = self.shared.state.read();
        let topic = state.topics.get(name)?;
        Some(topic.configs.clone())
    }

    /// The log start offset (low watermark) of a partition, `None` for an unknown partition.
    pub fn log_start_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let state = self.shared.state.read();
        Some(state.partition(topic, partition)?.log_start_offset)
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_millis(100));
        }
    }
}
