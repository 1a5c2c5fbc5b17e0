//! Builds a store from its spec as Kafka Streams does: Metered(Caching(ChangeLogging(inner))),
//! where `inner` is the RocksDB or in-memory store behind a transaction buffer (KIP-892's idea:
//! writes reach the store only once their transaction committed).

use std::sync::Arc;

use crate::caching::CachingKeyValueStore;
use crate::changelogging::{ChangeLoggingKeyValueStore, ChangelogSink};
use crate::error::{Result, StateError};
use crate::keys::KeyOrder;
use crate::memory::InMemoryKeyValueStore;
use crate::memory_budget::MemoryBudget;
use crate::metered::MeteredKeyValueStore;
use crate::read_only::ReadOnlyKeyValueStore;
use crate::read_snapshot::ReadSnapshot;
use crate::record_time::RecordTime;
use crate::rocks::RocksDbInstance;
use crate::session::SessionStore;
use crate::store::KeyValueStore;
use crate::transaction_buffer::TransactionBufferKeyValueStore;
use crate::window::WindowStore;

/// The shape of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A [`KeyValueStore`].
    KeyValue,
    /// A [`WindowStore`].
    Window {
        retention_ms: i64,
        segment_interval_ms: Option<i64>,
        retain_duplicates: bool,
        /// Entries by window start before key ([`crate::KeyOrder::TimeFirst`]): the store of an
        /// emit-on-close aggregation, which reads windows by the time they close.
        time_ordered: bool,
    },
    /// A [`SessionStore`].
    Session { retention_ms: i64 },
}

/// Everything needed to build one store of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Unique within the topology; the changelog topic is `<application.id>-<name>-changelog`.
    pub name: String,
    pub kind: StoreKind,
    /// On RocksDB (true) or in memory.
    pub persistent: bool,
    /// With a write-back cache that collapses updates until commit.
    pub caching: bool,
    /// With a changelog.
    pub logging: bool,
}

impl StoreSpec {
    /// A persistent, cached, logged key-value store: the default of `Materialized`.
    pub fn key_value(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: StoreKind::KeyValue,
            persistent: true,
            caching: true,
            logging: true,
        }
    }
}

/// What a task gives the stores it builds.
#[derive(Clone)]
pub struct StoreContext {
    /// Labels the store's metrics.
    pub task_id: String,
    /// The task's database, for persistent stores; without one they are built in memory.
    pub rocksdb: Option<Arc<RocksDbInstance>>,
    /// Where logged stores send their changes.
    pub changelog: Option<Arc<dyn ChangelogSink>>,
    /// The instance's `statestore.cache.max.bytes`: dirty bytes that every caching store
    /// together holds before they ask for a commit.
    pub cache: Arc<MemoryBudget>,
    /// The instance's `statestore.uncommitted.max.bytes`: bytes that every transaction buffer
    /// together holds before they ask for a commit.
    pub uncommitted: Arc<MemoryBudget>,
    /// The timestamp of the record the task is processing.
    pub record_time: RecordTime,
    /// Whether every operation's duration is recorded (`metrics.recording.level=debug`).
    pub timed: bool,
}

impl std::fmt::Debug for StoreContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreContext")
            .field("task_id", &self.task_id)
            .field("rocksdb", &self.rocksdb)
            .finish()
    }
}

/// A built store of any kind.
pub enum BuiltStore {
    KeyValue(Box<dyn KeyValueStore>),
    Window(WindowStore),
    Session(SessionStore),
}

impl std::fmt::Debug for BuiltStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuiltStore::KeyValue(s) => write!(f, "KeyValue({})", s.name()),
            BuiltStore::Window(w) => write!(f, "{w:?}"),
            BuiltStore::Session(s) => write!(f, "{s:?}"),
        }
    }
}

impl BuiltStore {
    /// The key-value layer at the top of the store, which every kind has.
    pub fn key_values(&mut self) -> &mut dyn KeyValueStore {
        match self {
            BuiltStore::KeyValue(s) => s.as_mut(),
            BuiltStore::Window(w) => w.inner_mut(),
            BuiltStore::Session(s) => s.inner_mut(),
        }
    }
}

/// Builds `spec` for a task.
pub fn build_store(spec: &StoreSpec, ctx: &StoreContext) -> Result<BuiltStore> {
    let base: Box<dyn KeyValueStore> = match (&ctx.rocksdb, spec.persistent) {
        (Some(db), true) => Box::new(db.key_value_store(&spec.name)?),
        _ => Box::new(InMemoryKeyValueStore::new(spec.name.clone())),
    };
    let base: Box<dyn KeyValueStore> = Box::new(TransactionBufferKeyValueStore::with_budget(
        base,
        &ctx.uncommitted,
    ));
    let logged: Box<dyn KeyValueStore> = match (&ctx.changelog, spec.logging) {
        (Some(sink), true) => Box::new(ChangeLoggingKeyValueStore::new(
            base,
            Arc::clone(sink),
            ctx.record_time.clone(),
        )),
        _ => base,
    };
    let cached: Box<dyn KeyValueStore> = if spec.caching {
        Box::new(CachingKeyValueStore::with_budget(
            logged,
            &ctx.cache,
            ctx.record_time.clone(),
        ))
    } else {
        logged
    };
    let metered: Box<dyn KeyValueStore> =
        Box::new(MeteredKeyValueStore::new(cached, &ctx.task_id, ctx.timed));
    Ok(of_kind(&spec.kind, metered))
}

/// A read-only view of the persistent store `spec` as of `snapshot`: what the commit before it
/// left there (nothing else reaches RocksDB: the transaction buffer above holds the open
/// transaction's writes, and the caching layer the dirty entries), every read (the
/// checkpoint's too, through [`ReadSnapshot::checkpoint`]) from that one moment. For queries
/// from outside the task.
pub fn build_read_only_at(spec: &StoreSpec, snapshot: &Arc<ReadSnapshot>) -> Result<BuiltStore> {
    if !spec.persistent {
        return Err(StateError::Config(format!(
            "store `{}` is in memory: only persistent stores can be read from outside their task",
            spec.name
        )));
    }
    let base = Box::new(ReadOnlyKeyValueStore::new(Box::new(
        snapshot.store(&spec.name)?,
    )));
    Ok(of_kind(&spec.kind, base))
}

/// `store` as a store of `kind`.
fn of_kind(kind: &StoreKind, store: Box<dyn KeyValueStore>) -> BuiltStore {
    match kind {
        StoreKind::KeyValue => BuiltStore::KeyValue(store),
        StoreKind::Window {
            retention_ms,
            segment_interval_ms,
            retain_duplicates,
            time_ordered,
        } => BuiltStore::Window(
            WindowStore::new(
                store,
                *retention_ms,
                *segment_interval_ms,
                *retain_duplicates,
            )
            .with_order(if *time_ordered {
                KeyOrder::TimeFirst
            } else {
                KeyOrder::KeyFirst
            }),
        ),
        StoreKind::Session { retention_ms } => {
            BuiltStore::Session(SessionStore::new(store, *retention_ms, None))
        }
    }
}
