//! Reads one partition of a store for SQL: its entries (all, or only the keys asked for),
//! decoded to rows, as of one commit, with the position they reflect — here when this
//! instance holds the partition, from its owner (`query/remote.rs`) otherwise, waiting while
//! it moves or is behind the position asked for.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use eddy_state::{BuiltStore, StoreSpec};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::query::directory::QueryDirectory;
use crate::query::remote::{self, PartitionAnswer, PartitionRequest, RemoteError};
use crate::query::sql::rows::{to_batch, wants_value_json, Entry, Row};
use crate::query::{read_partition, QueryableStores, StoreJson};

/// The most rows one scan of one partition reads, by default, before the query fails (not a
/// silent cut): [`crate::StateQueries::with_max_scan_rows`] sets another.
pub const DEFAULT_MAX_SCAN_ROWS: usize = 1_000_000;

/// How often a scan asks again for a partition that is not available.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// How long planning waits for other instances' rows to infer a table's columns from.
const SAMPLE_WAIT: Duration = Duration::from_secs(2);

/// Which entries a scan reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum KeyPredicate {
    /// Every entry.
    All,
    /// The entries of these keys (their bytes): point lookups.
    Points(Vec<Vec<u8>>),
    /// The entries whose keys' bytes lie between these bounds (a bounded range scan).
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>),
}

impl KeyPredicate {
    /// Whether `key` (its bytes) is one this predicate reads.
    pub fn admits(&self, key: &[u8]) -> bool {
        match self {
            KeyPredicate::All => true,
            KeyPredicate::Points(points) => points.iter().any(|p| p == key),
            KeyPredicate::Range(lo, hi) => {
                let above = match lo {
                    Bound::Included(l) => key >= l.as_slice(),
                    Bound::Excluded(l) => key > l.as_slice(),
                    Bound::Unbounded => true,
                };
                let below = match hi {
                    Bound::Included(h) => key <= h.as_slice(),
                    Bound::Excluded(h) => key < h.as_slice(),
                    Bound::Unbounded => true,
                };
                above && below
            }
        }
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Every window start (both ends inclusive).
pub(crate) const ALL_TIME: (i64, i64) = (i64::MIN, i64::MAX);

/// What one partition gave: its rows and the input offsets they reflect.
pub(crate) struct PartitionRows {
    pub rows: Vec<Row>,
    pub position: BTreeMap<String, i64>,
}

/// A store of this instance that SQL reads.
#[derive(Clone)]
pub(crate) struct StoreSource {
    pub spec: StoreSpec,
    pub json: StoreJson,
    pub stores: Arc<QueryableStores>,
    /// Where the other instances are (`application.server` set), to read what is not here.
    pub remote: Option<Arc<QueryDirectory>>,
    /// The input topics the store's position is counted in.
    pub inputs: Vec<String>,
    /// A window store's window size (rows get `window_end`).
    pub window_size_ms: Option<i64>,
    /// A key lives in the partition its records go to (`StoreDef`): lookups may be routed.
    pub keyed_by_record_key: bool,
    /// The bearer token other instances ask for.
    pub token: Option<Arc<str>>,
    /// The most rows a scan of one partition reads here before it fails.
    pub max_scan_rows: usize,
}

/// What a scan of one partition wants.
#[derive(Debug, Clone)]
pub(crate) struct PartitionScan {
    pub keys: KeyPredicate,
    /// The window starts to read (window stores).
    pub window: (i64, i64),
    /// Filters a remote owner applies before answering (`shipped_filter.rs`).
    pub filters: Vec<String>,
    pub limit: Option<usize>,
    /// The table's schema and the columns wanted of it.
    pub schema: SchemaRef,
    pub projection: Option<Vec<usize>>,
    /// Input topic → the offset the partition must have reached.
    pub min_position: BTreeMap<String, i64>,
    /// How long to wait for the partition to be available.
    pub wait: Duration,
}

impl StoreSource {
    /// The partitions held here now.
    pub fn local_partitions(&self) -> Vec<i32> {
        self.stores.live_partitions(&self.spec.name)
    }

    /// Every partition of the store.
    pub fn all_partitions(&self) -> Result<Vec<i32>> {
        match self.stores.partition_count(&self.spec.name) {
            Some(n) => Ok((0..n).collect()),
            None => Err(EngineError::Sql {
                sqlstate: crate::query::SqlState::NotAvailable,
                message: format!(
                    "how many partitions store `{}` has is not known yet (the application is \
                     starting); ask again",
                    self.spec.name
                ),
            }),
        }
    }

    /// Up to `limit` rows from the partitions held elsewhere, for inferring the columns of a
    /// store this instance holds no partition of (unreachable owners give none).
    pub async fn remote_sample(&self, limit: usize) -> Vec<Value> {
        let Some(directory) = &self.remote else {
            return Vec::new();
        };
        let mut sample = Vec::new();
        let deadline = Instant::now() + SAMPLE_WAIT;
        for partition in self.all_partitions().unwrap_or_default() {
            let request = PartitionRequest {
                store: self.spec.name.clone(),
                partition,
                keys: KeyPredicate::All,
                window: ALL_TIME,
                filters: Vec::new(),
                limit: Some(limit),
                schema: None,
                projection: None,
                min_position: BTreeMap::new(),
            };
            for server in directory.owners(&self.spec.name, partition) {
                let left = deadline.saturating_duration_since(Instant::now());
                let fetched = tokio::time::timeout(
                    left,
                    remote::fetch(&server, &request, self.token.as_deref()),
                )
                .await;
                if let Ok(Ok((PartitionAnswer::Rows(rows), _))) = fetched {
                    sample.extend(rows);
                    break;
                }
            }
            if sample.len() >= limit || Instant::now() >= deadline {
                break;
            }
        }
        sample
    }

    /// [`StoreSource::read`], failing past `max_scan_rows` rows unless a limit within them
    /// was given.
    pub fn read_capped(
        &self,
        partition: i32,
        keys: &KeyPredicate,
        window: (i64, i64),
        limit: Option<usize>,
        value_json: bool,
    ) -> Result<Option<PartitionRows>> {
        // A limit within the cap reads that many; any other read stops one row past the cap
        // and fails (a LIMIT above the cap must not cut the answer silently).
        let most = self.max_scan_rows;
        let cap = match limit {
            Some(l) if l <= most => l,
            _ => most.saturating_add(1),
        };
        let read = self.read(partition, keys, window, Some(cap), value_json)?;
        if let Some(read) = &read {
            if read.rows.len() > most {
                return Err(EngineError::Sql {
                    sqlstate: crate::query::SqlState::ProgramLimitExceeded,
                    message: format!(
                        "the scan of `{}` partition {partition} passed {most} rows; narrow \
                         the query (a key, a LIMIT)",
                        self.spec.name
                    ),
                });
            }
        }
        Ok(read)
    }

    /// Whether `position` has reached the bound of `scan`.
    pub fn reached(&self, position: &BTreeMap<String, i64>, bound: &BTreeMap<String, i64>) -> bool {
        remote::reached(position, bound, &self.inputs)
    }

    /// One partition for a scan, from here or from its owner: the batch (projected) and the
    /// position it reflects. Waits up to `scan.wait` while the partition is not available or
    /// behind `scan.min_position`, then fails naming it.
    pub async fn scan_partition(
        &self,
        partition: i32,
        scan: &PartitionScan,
    ) -> Result<(RecordBatch, BTreeMap<String, i64>)> {
        let name = &self.spec.name;
        let deadline = Instant::now() + scan.wait;
        let mut schema_ipc: Option<Vec<u8>> = None;
        loop {
            let value_json = wants_value_json(&scan.schema, scan.projection.as_ref());
            let read =
                self.read_capped(partition, &scan.keys, scan.window, scan.limit, value_json)?;
            let why = match read {
                Some(read) if self.reached(&read.position, &scan.min_position) => {
                    let batch = to_batch(&scan.schema, &read.rows)?;
                    let batch = match &scan.projection {
                        Some(p) => batch
                            .project(p)
                            .map_err(|e| EngineError::Query(e.to_string()))?,
                        None => batch,
                    };
                    return Ok((batch, read.position));
                }
                Some(read) => format!(
                    "it is at {:?} here, below the position asked for",
                    read.position
                ),
                None => match &self.remote {
                    None => "this instance does not hold it, and without `application.server` \
                             it cannot ask the one that does"
                        .to_string(),
                    Some(directory) => {
                        let owners = directory.owners(name, partition);
                        let mut why = "no instance answers for it now".to_string();
                        if !owners.is_empty() {
                            let schema = match &schema_ipc {
                                Some(s) => s.clone(),
                                None => remote::encode_schema(&scan.schema)?,
                            };
                            schema_ipc = Some(schema.clone());
                            let request = PartitionRequest {
                                store: name.clone(),
                                partition,
                                keys: scan.keys.clone(),
                                window: scan.window,
                                filters: scan.filters.clone(),
                                limit: scan.limit,
                                schema: Some(schema),
                                projection: scan.projection.clone(),
                                min_position: scan.min_position.clone(),
                            };
                            for server in owners {
                                let left = deadline.saturating_duration_since(Instant::now());
                                let fetched = tokio::time::timeout(
                                    left.max(RETRY_EVERY),
                                    remote::fetch(&server, &request, self.token.as_deref()),
                                )
                                .await
                                .unwrap_or_else(|_| {
                                    Err(RemoteError::Retry(format!(
                                        "{server} did not answer in time"
                                    )))
                                });
                                match fetched {
                                    Ok((PartitionAnswer::Batch(batch), position))
                                        if self.reached(&position, &scan.min_position) =>
                                    {
                                        return Ok((batch, position))
                                    }
                                    Ok((PartitionAnswer::Batch(_), position)) => {
                                        why = format!(
                                            "{server} has it at {position:?}, below the position asked for"
                                        )
                                    }
                                    Ok((PartitionAnswer::Rows(_), _)) => {
                                        why = format!("{server} answered rows, not a batch")
                                    }
                                    Err(RemoteError::Retry(m)) => why = m,
                                    Err(RemoteError::Fail(e)) => return Err(e),
                                }
                            }
                        }
                        why
                    }
                },
            };
            if Instant::now() >= deadline {
                return Err(EngineError::Sql {
                    sqlstate: crate::query::SqlState::NotAvailable,
                    message: format!(
                        "partition {partition} of store `{name}` is not available: {why}"
                    ),
                });
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Up to `limit` rows of `partition` matching `keys` (with `value_json` or without);
    /// `None` when the partition is not held here (any more).
    pub fn read(
        &self,
        partition: i32,
        keys: &KeyPredicate,
        window: (i64, i64),
        limit: Option<usize>,
        value_json: bool,
    ) -> Result<Option<PartitionRows>> {
        let Some(db) = self.stores.partition(&self.spec.name, partition) else {
            return Ok(None);
        };
        let limit = limit.unwrap_or(usize::MAX);
        let name = self.spec.name.clone();
        let (raw, position) = read_partition(&self.spec, &db, &mut |store| {
            // (key, window or session start, session end, value)
            let mut out: Vec<(Vec<u8>, Option<i64>, Option<i64>, Vec<u8>)> = Vec::new();
            let (from, to) = window;
            match (store, keys) {
                (BuiltStore::KeyValue(s), KeyPredicate::Points(points)) => {
                    for k in points {
                        if let Some(v) = s.get(k)? {
                            out.push((k.clone(), None, None, v));
                        }
                    }
                }
                (BuiltStore::KeyValue(s), KeyPredicate::Range(lo, hi)) => {
                    for item in s.range(as_ref(lo), as_ref(hi))?.take(limit) {
                        let (k, v) = item?;
                        out.push((k, None, None, v));
                    }
                }
                (BuiltStore::KeyValue(s), KeyPredicate::All) => {
                    for item in s.all()?.take(limit) {
                        let (k, v) = item?;
                        out.push((k, None, None, v));
                    }
                }
                (BuiltStore::Window(w), KeyPredicate::Points(points)) => {
                    'keys: for k in points {
                        for (start, v) in w.fetch_range(k, from, to)? {
                            out.push((k.clone(), Some(start), None, v));
                            if out.len() >= limit {
                                break 'keys;
                            }
                        }
                    }
                }
                // Visited, not collected: a scan holds no more than the rows it keeps, and
                // stops at the cap.
                (BuiltStore::Window(w), keys) => w.visit(from, to, &mut |e| {
                    if keys.admits(&e.key) {
                        out.push((e.key, Some(e.start), None, e.value));
                    }
                    out.len() < limit
                })?,
                (BuiltStore::Session(s), KeyPredicate::Points(points)) => {
                    'keys: for k in points {
                        for e in s.fetch(k)? {
                            if (from..=to).contains(&e.start) {
                                out.push((e.key, Some(e.start), Some(e.end), e.value));
                                if out.len() >= limit {
                                    break 'keys;
                                }
                            }
                        }
                    }
                }
                (BuiltStore::Session(s), keys) => s.visit(&mut |e| {
                    if keys.admits(&e.key) && (from..=to).contains(&e.start) {
                        out.push((e.key, Some(e.start), Some(e.end), e.value));
                    }
                    out.len() < limit
                })?,
            }
            Ok(out)
        })?;
        if !self.stores.holds(&name, partition, &db) {
            return Ok(None);
        }
        // Let go of the database before decoding: a task reopening it waits for its readers.
        drop(db);
        let rows = raw
            .iter()
            .map(|(k, start, end, v)| {
                // A window ends a size after its start; a session where it says.
                let end = end.or_else(|| {
                    start
                        .zip(self.window_size_ms)
                        .map(|(s, n)| s.saturating_add(n))
                });
                Entry::decode(&self.json, &name, k, *start, end, v, partition)
                    .map(|e| e.into_row(value_json))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(PartitionRows { rows, position }))
    }
}
