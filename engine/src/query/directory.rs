//! Which instance answers for which store partition (Kafka Streams' `application.server` and
//! `StreamsMetadata`), kept in the compacted topic `<application.id>-query-endpoints`:
//!
//! 1. An instance with `application.server` set publishes, keyed by that address, the store
//!    partitions it holds and can be queried for now, and publishes again whenever they change
//!    (a rebalance moved a task, a restore finished).
//! 2. Every such instance reads the whole topic from its start and keeps the latest entry of
//!    each address; an entry's time orders claims, so that while a partition moves (or after
//!    an instance died without saying so) the newest claim is asked first.
//! 3. On close an instance publishes a tombstone for its address.
//!
//! The directory only says whom to ask: an owner that no longer holds a partition says so
//! (`remote.rs` retries), so a stale entry costs a retry, never a wrong answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::query::QueryableStores;

/// How often the directory thread looks for changes here and reads the others' entries.
const TICK: Duration = Duration::from_millis(100);

/// How often an instance publishes its entry even when nothing changed.
const REPUBLISH_EVERY: Duration = Duration::from_secs(5);

/// What one instance publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Endpoint {
    /// Its `application.server`.
    pub server: String,
    /// When it published this (ms since the epoch).
    pub published_ms: i64,
    /// Store → the partitions it answers for.
    pub stores: BTreeMap<String, Vec<i32>>,
}

/// The instances of one application that answer queries, as last published.
pub(crate) struct QueryDirectory {
    /// This instance's own address.
    pub server: String,
    peers: RwLock<BTreeMap<String, Endpoint>>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for QueryDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryDirectory")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl QueryDirectory {
    /// Starts publishing `stores` as `server` to `topic` and reading the other instances'.
    pub fn start(
        server: String,
        topic: String,
        stores: Arc<QueryableStores>,
        producer: BaseProducer,
        consumer: BaseConsumer,
    ) -> Result<Arc<Self>> {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
            .map_err(|e| EngineError::Query(format!("reading `{topic}`: {e}")))?;
        consumer
            .assign(&assignment)
            .map_err(|e| EngineError::Query(format!("reading `{topic}`: {e}")))?;
        let directory = Arc::new(Self {
            server,
            peers: RwLock::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let run = Arc::clone(&directory);
        let thread = std::thread::Builder::new()
            .name("eddy-query-directory".into())
            .spawn(move || run.run(&topic, &stores, &producer, &consumer))
            .map_err(|e| EngineError::Query(format!("starting the query directory: {e}")))?;
        *directory.thread.lock() = Some(thread);
        Ok(directory)
    }

    fn run(
        &self,
        topic: &str,
        stores: &QueryableStores,
        producer: &BaseProducer,
        consumer: &BaseConsumer,
    ) {
        let mut published: Option<BTreeMap<String, Vec<i32>>> = None;
        let mut last_sent = std::time::Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let live = stores.live();
            // Again now and then as well: a send that failed after it was queued is repaired.
            if published.as_ref() != Some(&live) || last_sent.elapsed() > REPUBLISH_EVERY {
                last_sent = std::time::Instant::now();
                let entry = Endpoint {
                    server: self.server.clone(),
                    published_ms: now_ms(),
                    stores: live.clone(),
                };
                if let Ok(json) = serde_json::to_vec(&entry) {
                    let sent = producer.send(
                        BaseRecord::to(topic)
                            .partition(0)
                            .key(&self.server)
                            .payload(&json),
                    );
                    match sent {
                        Ok(()) => published = Some(live),
                        Err((e, _)) => tracing::warn!("publishing the query endpoint: {e}"),
                    }
                }
            }
            producer.poll(Duration::ZERO);
            let deadline = std::time::Instant::now() + TICK;
            while let Some(polled) =
                consumer.poll(deadline.saturating_duration_since(std::time::Instant::now()))
            {
                let Ok(message) = polled else { continue };
                let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    continue;
                };
                let mut peers = self.peers.write();
                match message.payload().map(serde_json::from_slice::<Endpoint>) {
                    None => {
                        peers.remove(key);
                    }
                    Some(Ok(entry)) => {
                        peers.insert(key.to_string(), entry);
                    }
                    Some(Err(e)) => tracing::warn!("an unreadable query endpoint entry: {e}"),
                }
            }
        }
        let _ = producer.send(
            BaseRecord::<str, [u8]>::to(topic)
                .partition(0)
                .key(&self.server),
        );
        let _ = producer.flush(Duration::from_secs(5));
    }

    /// The other instances that claim `partition` of `store`, newest claim first.
    pub fn owners(&self, store: &str, partition: i32) -> Vec<String> {
        let peers = self.peers.read();
        let mut claims: Vec<&Endpoint> = peers
            .values()
            .filter(|e| e.server != self.server)
            .filter(|e| e.stores.get(store).is_some_and(|p| p.contains(&partition)))
            .collect();
        claims.sort_by_key(|e| std::cmp::Reverse(e.published_ms));
        claims.iter().map(|e| e.server.clone()).collect()
    }

    /// Every instance's entry as last read (this one's included once it read its own).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.peers.read().values().cloned().collect()
    }

    /// Publishes the tombstone and stops.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}
