//! Interactive queries (Kafka Streams' IQ): reads of a running application's persistent
//! stores from any thread, typed with the stores' own serdes.
//!
//! 1. A task's stores become queryable once it is restored and initialized, and stop being
//!    so when it closes (a rebalance, a rewind); [`StateQueries::stores`] lists what this
//!    instance holds now.
//! 2. A query reads the task's RocksDB database directly. Only committed state is there: the
//!    open transaction's writes wait in the transaction buffer, dirty entries in the cache.
//! 3. Each partition is read from one RocksDB snapshot (`eddy_state::ReadSnapshot`), so as
//!    of one commit, together with the checkpoint that commit wrote, and the answer says the
//!    position it reflects: the next input offset of each partition
//!    ([`Positioned::position`]).
//! 4. A typed query reads the partitions held by this instance only; `partitions` in the
//!    answer says which. SQL ([`StateQueries::sql`]) reads every partition: those held
//!    elsewhere from their owners, found through `application.server` (`directory.rs`).
//!
//! ```no_run
//! # fn demo(app: &eddy_engine::KafkaStreams) -> eddy_engine::Result<()> {
//! let counts = app.queries().key_value::<String, i64>("word-counts")?;
//! let hello = counts.get(&"hello".to_string())?;
//! println!("{:?} as of {:?}", hello.value, hello.position);
//! # Ok(()) }
//! ```

mod directory;
mod http;
mod pg;
mod pg_position;
mod pg_time_limit;
mod registry;
mod remote;
mod serving;
mod sql;
mod sqlstate;
mod store_json;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use eddy_state::{build_read_only_at, BuiltStore, RocksDbInstance, StoreKind, StoreSpec};

use crate::error::{EngineError, Result};
use crate::processor::store_serdes;
use crate::serdes::SerdeRef;
use crate::topology::Topology;

pub(crate) use directory::QueryDirectory;
pub use http::QueryServer;
pub use pg::PgServer;
pub(crate) use registry::QueryableStores;
pub use sql::{QueryOptions, SqlAnswer, DEFAULT_MAX_SCAN_ROWS};
pub use sqlstate::SqlState;
pub(crate) use sqlstate::{of_datafusion, of_engine, of_error};
pub(crate) use store_json::StoreJson;

/// An answer and the state it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positioned<T> {
    pub value: T,
    /// (input topic, partition) → the next offset the state reflects: every record before it
    /// is in the answer, none after.
    pub position: BTreeMap<(String, i32), i64>,
    /// The partitions of the store that were read (those this instance holds).
    pub partitions: Vec<i32>,
}

/// A store as queries see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    pub name: String,
    pub kind: StoreKind,
    /// The partitions this instance can answer for now.
    pub partitions: Vec<i32>,
}

/// Queries of one running application's state, or of several applications' together (see
/// [`StateQueries::merged`]); cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct StateQueries {
    apps: Vec<AppQueries>,
    /// The tables' columns, shared by every query's session.
    pub(crate) schemas: Arc<sql::SchemaCache>,
    /// The bearer token the HTTP endpoint asks of every request, and this instance gives the
    /// others when it reads their partitions.
    pub(crate) token: Option<Arc<str>>,
    /// The most rows a scan of one partition held here reads before its query fails.
    pub(crate) max_scan_rows: usize,
}

/// One application's part of [`StateQueries`].
#[derive(Clone)]
struct AppQueries {
    topology: Arc<Topology>,
    application_id: String,
    stores: Arc<QueryableStores>,
    /// The other instances, when `application.server` is set.
    directory: Option<Arc<QueryDirectory>>,
    /// What the web console shows of the running application.
    pub(crate) live: Arc<crate::console::LiveApp>,
}

impl std::fmt::Debug for StateQueries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateQueries").finish_non_exhaustive()
    }
}

impl StateQueries {
    pub(crate) fn new(
        topology: Arc<Topology>,
        application_id: String,
        stores: Arc<QueryableStores>,
        directory: Option<Arc<QueryDirectory>>,
        live: Arc<crate::console::LiveApp>,
    ) -> Self {
        Self {
            apps: vec![AppQueries {
                topology,
                application_id,
                stores,
                directory,
                live,
            }],
            schemas: Arc::default(),
            token: None,
            max_scan_rows: sql::DEFAULT_MAX_SCAN_ROWS,
        }
    }

    /// The queries of several applications run by this process as one: their stores side by
    /// side (SQL can join them). Store names must differ across the applications.
    pub fn merged(parts: impl IntoIterator<Item = StateQueries>) -> Result<Self> {
        let apps: Vec<_> = parts.into_iter().flat_map(|q| q.apps).collect();
        let mut seen = std::collections::BTreeSet::new();
        for app in &apps {
            for name in app.topology.stores.keys() {
                if !seen.insert(name.clone()) {
                    return Err(EngineError::Query(format!(
                        "two applications have a store named `{name}`"
                    )));
                }
            }
        }
        Ok(Self {
            apps,
            schemas: Arc::default(),
            token: None,
            max_scan_rows: sql::DEFAULT_MAX_SCAN_ROWS,
        })
    }

    /// The running applications these queries read, for the web console.
    pub(crate) fn live_apps(&self) -> impl Iterator<Item = &Arc<crate::console::LiveApp>> {
        self.apps.iter().map(|a| &a.live)
    }

    /// These queries with a bearer token: [`StateQueries::serve_http`] then answers only
    /// requests with `Authorization: Bearer <token>`, and reads of other instances' partitions
    /// send it (every instance of an application is given the same token). An empty token is
    /// none; one with other than visible ASCII characters (a header cannot carry it) is an
    /// error.
    pub fn with_token(mut self, token: Option<String>) -> Result<Self> {
        let token = token.filter(|t| !t.is_empty());
        if let Some(t) = &token {
            if !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(EngineError::Config {
                    key: "http token".into(),
                    reason: "a bearer token is visible ASCII characters only (no spaces, no \
                             line breaks)"
                        .into(),
                });
            }
        }
        self.token = token.map(Arc::from);
        Ok(self)
    }

    /// These queries with another cap on the rows one scan of one partition held here may
    /// read ([`DEFAULT_MAX_SCAN_ROWS`](crate::DEFAULT_MAX_SCAN_ROWS) by default): a query that
    /// would read more fails with SQLSTATE `54000`, never a silently cut answer (a `LIMIT`
    /// within the cap reads only that many). At least 1.
    pub fn with_max_scan_rows(mut self, rows: usize) -> Self {
        self.max_scan_rows = rows.max(1);
        self
    }

    /// Every store definition with the registry that holds its partitions.
    pub(crate) fn definitions(
        &self,
    ) -> impl Iterator<Item = (&crate::topology::StoreDef, &Arc<QueryableStores>)> {
        self.apps
            .iter()
            .flat_map(|a| a.topology.stores.values().map(move |def| (def, &a.stores)))
    }

    /// The store `name` as SQL reads it: persistent, key-value or window, with JSON serdes.
    pub(crate) fn source(&self, name: &str) -> Option<sql::StoreSource> {
        let app = self
            .apps
            .iter()
            .find(|a| a.topology.stores.contains_key(name))?;
        let def = &app.topology.stores[name];
        let json = def.json.clone()?;
        if !def.spec.persistent {
            return None;
        }
        let inputs = app
            .topology
            .subtopologies()
            .iter()
            .filter(|sub| sub.stores.iter().any(|s| s == name))
            .flat_map(|sub| sub.source_topics.iter())
            .map(|t| app.topology.physical_topic(&app.application_id, t))
            .collect();
        Some(sql::StoreSource {
            spec: def.spec.clone(),
            json,
            stores: Arc::clone(&app.stores),
            remote: app.directory.clone(),
            inputs,
            window_size_ms: def.window_size_ms,
            keyed_by_record_key: def.keyed_by_record_key,
            token: self.token.clone(),
            max_scan_rows: self.max_scan_rows,
        })
    }

    /// The query endpoints of every instance, as this one last read them (empty without
    /// `application.server`).
    pub fn instances(&self) -> Vec<(String, BTreeMap<String, Vec<i32>>)> {
        self.apps
            .iter()
            .filter_map(|a| a.directory.as_ref())
            .flat_map(|d| d.endpoints())
            .map(|e| (e.server, e.stores))
            .collect()
    }

    /// The persistent stores, with the partitions this instance holds now.
    pub fn stores(&self) -> Vec<StoreInfo> {
        self.definitions()
            .filter(|(s, _)| s.spec.persistent)
            .map(|(s, stores)| StoreInfo {
                name: s.spec.name.clone(),
                kind: s.spec.kind.clone(),
                partitions: stores.live_partitions(&s.spec.name),
            })
            .collect()
    }

    fn store<K: 'static, V: 'static>(&self, name: &str, want: &str) -> Result<StoreQuery<K, V>> {
        let (def, stores) = self
            .definitions()
            .find(|(def, _)| def.spec.name == name)
            .ok_or_else(|| EngineError::Query(format!("no store named `{name}`")))?;
        if !def.spec.persistent {
            return Err(EngineError::Query(format!(
                "store `{name}` is in memory; only persistent stores can be queried"
            )));
        }
        let kind = match def.spec.kind {
            StoreKind::KeyValue => "key-value",
            StoreKind::Window { .. } => "window",
            StoreKind::Session { .. } => "session",
        };
        if kind != want {
            return Err(EngineError::Query(format!(
                "store `{name}` is a {kind} store, not a {want} store"
            )));
        }
        let (key, value) = store_serdes::<K, V>(&def.serdes, name)?;
        Ok(StoreQuery {
            spec: def.spec.clone(),
            key,
            value,
            stores: Arc::clone(stores),
        })
    }

    /// Queries of key-value store `name`, whose keys are `K` and values `V`.
    pub fn key_value<K: 'static, V: 'static>(&self, name: &str) -> Result<KeyValueQuery<K, V>> {
        Ok(KeyValueQuery(self.store(name, "key-value")?))
    }

    /// Queries of window store `name`.
    pub fn window<K: 'static, V: 'static>(&self, name: &str) -> Result<WindowQuery<K, V>> {
        Ok(WindowQuery(self.store(name, "window")?))
    }
}

impl<K, V> std::fmt::Debug for StoreQuery<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreQuery")
            .field("store", &self.spec.name)
            .finish_non_exhaustive()
    }
}

/// What the typed queries of one store share.
struct StoreQuery<K, V> {
    spec: StoreSpec,
    key: SerdeRef<K>,
    value: SerdeRef<V>,
    stores: Arc<QueryableStores>,
}

impl<K, V> StoreQuery<K, V> {
    fn corrupt(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::State(eddy_state::StateError::Corrupted {
            store: self.spec.name.clone(),
            reason: e.to_string(),
        })
    }

    fn key_bytes(&self, key: &K) -> Result<Vec<u8>> {
        self.key
            .serialize(key)
            .map_err(|source| EngineError::Serialization {
                target: format!("a key of store {}", self.spec.name),
                source,
            })
    }

    fn key(&self, bytes: &[u8]) -> Result<K> {
        self.key.deserialize(bytes).map_err(|e| self.corrupt(e))
    }

    fn value(&self, bytes: &[u8]) -> Result<V> {
        self.value.deserialize(bytes).map_err(|e| self.corrupt(e))
    }

    /// Runs `read` on every partition held here, each as of one commit, and gathers the rows.
    fn read<T>(
        &self,
        mut read: impl FnMut(&BuiltStore) -> eddy_state::Result<Vec<T>>,
    ) -> Result<Positioned<Vec<T>>> {
        let mut answer = Positioned {
            value: Vec::new(),
            position: BTreeMap::new(),
            partitions: Vec::new(),
        };
        for (partition, db) in self.stores.partitions(&self.spec.name) {
            // Held only while this partition is read: the task may reopen it meanwhile.
            let Some(db) = db.upgrade() else {
                continue;
            };
            let (rows, offsets) = read_partition(&self.spec, &db, &mut read)?;
            if !self.stores.holds(&self.spec.name, partition, &db) {
                // Closed while it was read (a rebalance): what it said may be gone already.
                continue;
            }
            answer.value.extend(rows);
            answer.partitions.push(partition);
            for (topic, offset) in offsets {
                answer.position.insert((topic, partition), offset);
            }
        }
        Ok(answer)
    }
}

pub(crate) fn read_partition<T>(
    spec: &StoreSpec,
    db: &Arc<RocksDbInstance>,
    read: &mut impl FnMut(&BuiltStore) -> eddy_state::Result<Vec<T>>,
) -> Result<(Vec<T>, BTreeMap<String, i64>)> {
    // One snapshot for the rows and the checkpoint: both as of the same commit.
    let snapshot = db.snapshot();
    let view = build_read_only_at(spec, &snapshot)?;
    let rows = read(&view)?;
    Ok((rows, snapshot.checkpoint()?.input_offsets))
}

/// Typed queries of a key-value store.
#[derive(Debug)]
pub struct KeyValueQuery<K, V>(StoreQuery<K, V>);

impl<K: 'static, V: 'static> KeyValueQuery<K, V> {
    /// The value of `key`, from whichever partition here holds it.
    pub fn get(&self, key: &K) -> Result<Positioned<Option<V>>> {
        let k = self.0.key_bytes(key)?;
        let found = self.0.read(|store| match store {
            BuiltStore::KeyValue(s) => Ok(s.get(&k)?.into_iter().collect()),
            _ => Ok(Vec::new()),
        })?;
        let value = found.value.first().map(|b| self.0.value(b)).transpose()?;
        Ok(Positioned {
            value,
            position: found.position,
            partitions: found.partitions,
        })
    }

    /// Entries whose keys' bytes lie in the range (in the order of the bytes, which is the
    /// order of the keys only for serdes that keep it, such as strings), at most `limit`.
    pub fn range(
        &self,
        from: Bound<&K>,
        to: Bound<&K>,
        limit: usize,
    ) -> Result<Positioned<Vec<(K, V)>>> {
        let bound = |b: Bound<&K>| -> Result<Bound<Vec<u8>>> {
            Ok(match b {
                Bound::Included(k) => Bound::Included(self.0.key_bytes(k)?),
                Bound::Excluded(k) => Bound::Excluded(self.0.key_bytes(k)?),
                Bound::Unbounded => Bound::Unbounded,
            })
        };
        let (from, to) = (bound(from)?, bound(to)?);
        let raw = self.0.read(|store| match store {
            BuiltStore::KeyValue(s) => s
                .range(as_ref(&from), as_ref(&to))?
                .take(limit)
                .collect::<eddy_state::Result<Vec<_>>>(),
            _ => Ok(Vec::new()),
        })?;
        let mut rows = raw
            .value
            .iter()
            .map(|(k, v)| Ok((k.clone(), (self.0.key(k)?, self.0.value(v)?))))
            .collect::<Result<Vec<_>>>()?;
        // Partitions are read one after another: put the whole answer in key order.
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.truncate(limit);
        Ok(Positioned {
            value: rows.into_iter().map(|(_, row)| row).collect(),
            position: raw.position,
            partitions: raw.partitions,
        })
    }

    /// Every entry, at most `limit`.
    pub fn all(&self, limit: usize) -> Result<Positioned<Vec<(K, V)>>> {
        self.range(Bound::Unbounded, Bound::Unbounded, limit)
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Typed queries of a window store.
#[derive(Debug)]
pub struct WindowQuery<K, V>(StoreQuery<K, V>);

impl<K: 'static, V: 'static> WindowQuery<K, V> {
    /// `(window start, value)` of the windows of `key` starting in `[from, to]`, oldest first.
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Positioned<Vec<(i64, V)>>> {
        let k = self.0.key_bytes(key)?;
        let raw = self.0.read(|store| match store {
            BuiltStore::Window(w) => w.fetch_range(&k, from, to),
            _ => Ok(Vec::new()),
        })?;
        let mut rows = raw
            .value
            .iter()
            .map(|(start, v)| Ok((*start, self.0.value(v)?)))
            .collect::<Result<Vec<_>>>()?;
        rows.sort_by_key(|(start, _)| *start);
        Ok(Positioned {
            value: rows,
            position: raw.position,
            partitions: raw.partitions,
        })
    }

    /// `(key, window start, value)` of every window starting in `[from, to]`.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Positioned<Vec<(K, i64, V)>>> {
        let raw = self.0.read(|store| match store {
            BuiltStore::Window(w) => w.fetch_all(from, to),
            _ => Ok(Vec::new()),
        })?;
        let rows = raw
            .value
            .iter()
            .map(|e| Ok((self.0.key(&e.key)?, e.start, self.0.value(&e.value)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Positioned {
            value: rows,
            position: raw.position,
            partitions: raw.partitions,
        })
    }
}
