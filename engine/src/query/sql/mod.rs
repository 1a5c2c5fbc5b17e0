//! SQL over the state of a running application (DataFusion): every persistent store of the
//! topology is a table of the same name, read from committed state.
//!
//! 1. The stores are the tables of the `public` schema (`catalog.rs`), each with columns
//!    inferred from a sample of its rows (so columns follow what the store holds now).
//! 2. DataFusion plans the query read-only (no DDL, no DML, no `SET`); `key = …` and
//!    `key IN (…)` become point lookups in the scan (`EXPLAIN` shows `read=lookup` or
//!    `read=scan`), key ranges and window bounds bounded scans; other plain filters are
//!    shipped to the owners of remote partitions (`shipped_filter.rs`), and DataFusion
//!    evaluates everything not read exactly.
//! 3. Every partition of a store is read, each as of one commit: here when this instance
//!    holds it, from its owner otherwise (`query/remote.rs`), waiting while it moves or is
//!    behind [`QueryOptions::min_position`]; a partition that stays unavailable fails the
//!    query, naming it. The answer carries the position of every partition it read.
//!
//! ```no_run
//! # fn demo(app: &eddy_engine::KafkaStreams) -> eddy_engine::Result<()> {
//! let answer = app.queries().sql("SELECT key, value FROM \"word-counts\" WHERE key = 'hello'")?;
//! println!("{}", answer.to_json()?);
//! # Ok(()) }
//! ```

mod catalog;
pub(crate) mod declared;
mod lookup;
mod pushdown;
mod read;
mod rows;
mod shipped_filter;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use parking_lot::Mutex;

use crate::error::{EngineError, Result};
use crate::query::StateQueries;

pub(crate) use catalog::SchemaCache;
pub use read::DEFAULT_MAX_SCAN_ROWS;
pub(crate) use read::{KeyPredicate, StoreSource};
pub(crate) use rows::{to_batch, wants_value_json};
pub(crate) use shipped_filter::keep_passing;

/// How long a query waits, by default, for a partition that is moving or restoring.
pub const DEFAULT_PARTITION_WAIT: Duration = Duration::from_secs(10);

/// How long a query may run, by default.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(30);

/// How a query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOptions {
    /// (input topic, partition) → the offset each store partition must have reached
    /// (read-your-writes: pass back a previous answer's [`SqlAnswer::position`]).
    pub min_position: BTreeMap<(String, i32), i64>,
    /// How long to wait for a partition that is not available (moving, restoring, behind
    /// `min_position`) before failing.
    pub wait: Duration,
    /// How long the whole query may run before it fails.
    pub time_limit: Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            min_position: BTreeMap::new(),
            wait: DEFAULT_PARTITION_WAIT,
            time_limit: DEFAULT_TIME_LIMIT,
        }
    }
}

/// One query's options and the positions its scans read at (a DataFusion session extension).
/// A Postgres connection keeps one for all its statements: its bound is the connection's
/// setting, and each statement starts it again ([`QueryScope::restart`]).
#[derive(Debug)]
pub(crate) struct QueryScope {
    /// Where the statement planned last records its reads: a statement's scans keep the
    /// sink of their own statement ([`QueryScope::statement`]), so the statements of one
    /// Postgres query string, planned before any row streams, never mix their positions.
    reads: Mutex<Arc<StatementReads>>,
    min_position: Mutex<BTreeMap<(String, i32), i64>>,
    pub wait: Duration,
}

/// What one statement's scans read at.
#[derive(Debug, Default)]
pub(crate) struct StatementReads(Mutex<Reads>);

#[derive(Debug, Default)]
struct Reads {
    /// (input topic, partition) → the offset read at, for every partition read.
    positions: BTreeMap<(String, i32), i64>,
    /// The entries of the statement's bound that one of its stores counts, so that a scan
    /// checks it (taken at planning: under a LIMIT a bounded partition may never be read).
    checked: BTreeSet<(String, i32)>,
    /// The statement failed: it answered nothing whole, so it reflects no position.
    failed: bool,
}

impl StatementReads {
    /// The positions read at; none once the statement failed.
    pub fn positions(&self) -> BTreeMap<(String, i32), i64> {
        let reads = self.0.lock();
        if reads.failed {
            BTreeMap::new()
        } else {
            reads.positions.clone()
        }
    }

    /// The statement failed: its answer was not sent whole.
    pub fn fail(&self) {
        self.0.lock().failed = true;
    }

    /// The first entry of `bound` that no store of the statement counts, if any.
    pub fn unchecked(&self, bound: &BTreeMap<(String, i32), i64>) -> Option<(String, i32)> {
        let reads = self.0.lock();
        bound.keys().find(|k| !reads.checked.contains(*k)).cloned()
    }
}

/// What one statement's scans read with, taken when it is planned.
#[derive(Debug, Clone)]
pub(crate) struct StatementScope {
    reads: Arc<StatementReads>,
    min_position: BTreeMap<(String, i32), i64>,
    pub wait: Duration,
}

impl Default for QueryScope {
    fn default() -> Self {
        Self::new(&QueryOptions::default())
    }
}

impl QueryScope {
    fn new(options: &QueryOptions) -> Self {
        Self {
            reads: Mutex::new(Arc::default()),
            min_position: Mutex::new(options.min_position.clone()),
            wait: options.wait,
        }
    }

    /// The minimum position asked for: (input topic, partition) → offset.
    pub fn min_position(&self) -> BTreeMap<(String, i32), i64> {
        self.min_position.lock().clone()
    }

    /// Asks the next statements for `bound` (empty: none).
    pub fn set_min_position(&self, bound: BTreeMap<(String, i32), i64>) {
        *self.min_position.lock() = bound;
    }

    /// The bound and position sink of the statement being planned.
    pub fn statement(&self) -> StatementScope {
        StatementScope {
            reads: Arc::clone(&self.reads.lock()),
            min_position: self.min_position(),
            wait: self.wait,
        }
    }

    /// The sink of the last statement planned; its positions are complete once its rows
    /// were read.
    pub fn last_reads(&self) -> Arc<StatementReads> {
        Arc::clone(&self.reads.lock())
    }

    /// The positions the last statement read at.
    #[cfg(test)]
    pub fn positions(&self) -> BTreeMap<(String, i32), i64> {
        self.last_reads().positions()
    }

    /// Makes `reads` the last statement's (a cursor's `FETCH` reads its `DECLARE`'s).
    pub fn resume(&self, reads: Arc<StatementReads>) {
        *self.reads.lock() = reads;
    }

    /// A new statement starts: no position read yet.
    pub fn restart(&self) {
        *self.reads.lock() = Arc::default();
    }
}

impl StatementScope {
    /// Whether the statement asks for a minimum position.
    pub fn bounded(&self) -> bool {
        !self.min_position.is_empty()
    }

    /// The bound on store partition `partition`: input topic → offset.
    pub fn bound(&self, partition: i32) -> BTreeMap<String, i64> {
        self.min_position
            .iter()
            .filter(|((_, p), _)| *p == partition)
            .map(|((t, _), o)| (t.clone(), *o))
            .collect()
    }

    /// A store fed by `inputs`, of `partitions`, is read: the bound's entries it counts are
    /// checked by its scans.
    pub fn plan(&self, inputs: &[String], partitions: &[i32]) {
        let mut reads = self.reads.0.lock();
        for (topic, partition) in self.min_position.keys() {
            if inputs.contains(topic) && partitions.contains(partition) {
                reads.checked.insert((topic.clone(), *partition));
            }
        }
    }

    /// Store partition `partition` was read at `position` (a partition read twice, by a
    /// self-join or two stores of one task, reports the older read).
    pub fn note(&self, partition: i32, position: BTreeMap<String, i64>) {
        let positions = &mut self.reads.0.lock().positions;
        for (topic, offset) in position {
            let at = positions.entry((topic, partition)).or_insert(offset);
            *at = (*at).min(offset);
        }
    }
}

/// The answer to a SQL query.
#[derive(Debug, Clone)]
pub struct SqlAnswer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// (input topic, partition) → next offset the rows reflect, for every partition read.
    pub position: BTreeMap<(String, i32), i64>,
}
impl SqlAnswer {
    /// The rows as a JSON array of objects.
    pub fn to_json(&self) -> Result<String> {
        let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        writer
            .write_batches(&batches)
            .and_then(|()| writer.finish())
            .map_err(|e| EngineError::Query(format!("writing JSON: {e}")))?;
        let bytes = writer.into_inner();
        Ok(if bytes.is_empty() {
            "[]".to_string()
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

pub(crate) fn query_error(e: datafusion::error::DataFusionError) -> EngineError {
    let sqlstate = crate::query::of_datafusion(&e);
    let sql = |message: String| EngineError::Sql { sqlstate, message };
    match e {
        // An engine error (a partition not available, a scan past its cap) as it was raised.
        datafusion::error::DataFusionError::External(inner) => {
            match inner.downcast::<EngineError>() {
                Ok(engine) => *engine,
                Err(other) => sql(other.to_string()),
            }
        }
        other => sql(other.to_string()),
    }
}

impl StateQueries {
    /// A DataFusion session over the stores (`scope`: the options and position sink of one
    /// query; without it, the defaults and no positions, as for the Postgres endpoint).
    pub(crate) fn session(&self, scope: Option<Arc<QueryScope>>) -> Result<SessionContext> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public");
        if let Some(scope) = scope {
            config = config.with_extension(scope);
        }
        let ctx = SessionContext::new_with_config(config);
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| EngineError::Query("DataFusion has no default catalog".into()))?;
        catalog
            .register_schema("public", Arc::new(catalog::StoreCatalog::new(self.clone())))
            .map_err(query_error)?;
        Ok(ctx)
    }

    /// Runs a read-only SQL query over every partition of the stores.
    pub async fn sql_async(&self, sql: &str) -> Result<SqlAnswer> {
        self.sql_async_with(sql, &QueryOptions::default()).await
    }

    /// [`StateQueries::sql_async`] with `options`.
    pub async fn sql_async_with(&self, sql: &str, options: &QueryOptions) -> Result<SqlAnswer> {
        tokio::time::timeout(options.time_limit, self.run_sql(sql, options))
            .await
            .unwrap_or_else(|_| {
                Err(EngineError::Sql {
                    sqlstate: crate::query::SqlState::QueryCanceled,
                    message: format!(
                        "the query ran past its time limit of {} ms; narrow it (a key, a LIMIT)",
                        options.time_limit.as_millis()
                    ),
                })
            })
    }

    async fn run_sql(&self, sql: &str, options: &QueryOptions) -> Result<SqlAnswer> {
        let scope = Arc::new(QueryScope::new(options));
        let ctx = self.session(Some(Arc::clone(&scope)))?;
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = ctx
            .sql_with_options(sql, read_only)
            .await
            .map_err(query_error)?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(query_error)?;
        let reads = scope.last_reads();
        // A bound no scan checks would pass silently: a topic or partition the query's
        // stores do not count is a mistake to report.
        if let Some((topic, partition)) = reads.unchecked(&options.min_position) {
            return Err(EngineError::Query(format!(
                "the minimum position names partition {partition} of `{topic}`, which no \
                 store this query reads counts"
            )));
        }
        let position = reads.positions();
        Ok(SqlAnswer {
            schema,
            batches,
            position,
        })
    }

    /// The first (input topic, partition) of `bound` that no store's position counts (a
    /// topic no store reads, or a partition past a store's count), if any.
    pub(crate) fn unreflected(
        &self,
        bound: &BTreeMap<(String, i32), i64>,
    ) -> Option<(String, i32)> {
        let sources: Vec<StoreSource> = self
            .stores()
            .iter()
            .filter_map(|s| self.source(&s.name))
            .collect();
        bound.keys().find_map(|(topic, partition)| {
            let counted = sources.iter().any(|s| {
                s.inputs.contains(topic)
                    && *partition >= 0
                    && s.all_partitions()
                        .map_or(true, |all| all.contains(partition))
            });
            (!counted).then(|| (topic.clone(), *partition))
        })
    }

    /// The columns of store `name` as SQL reads it (declared, or inferred from its rows).
    pub async fn schema_async(&self, name: &str) -> Result<SchemaRef> {
        let quoted = name.replace('"', "\"\"");
        let answer = self
            .sql_async(&format!("SELECT * FROM \"{quoted}\" LIMIT 0"))
            .await?;
        Ok(answer.schema)
    }

    /// [`StateQueries::schema_async`], waiting for the answer on this thread.
    pub fn schema(&self, name: &str) -> Result<SchemaRef> {
        let quoted = name.replace('"', "\"\"");
        Ok(self
            .sql(&format!("SELECT * FROM \"{quoted}\" LIMIT 0"))?
            .schema)
    }

    /// [`StateQueries::sql_async`], waiting for the answer on this thread.
    pub fn sql(&self, sql: &str) -> Result<SqlAnswer> {
        self.sql_with(sql, &QueryOptions::default())
    }

    /// [`StateQueries::sql_async_with`], waiting for the answer on this thread.
    pub fn sql_with(&self, sql: &str, options: &QueryOptions) -> Result<SqlAnswer> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(EngineError::Query(
                "StateQueries::sql blocks; inside an async runtime use sql_async".into(),
            ));
        }
        // One runtime for every blocking query of the process, with a thread per core of the
        // machine this was measured on, so a scan's partitions decode side by side.
        static RUNTIME: std::sync::OnceLock<std::io::Result<tokio::runtime::Runtime>> =
            std::sync::OnceLock::new();
        let runtime = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("eddy-sql")
                .enable_all()
                .build()
        });
        match runtime {
            Ok(runtime) => runtime.block_on(self.sql_async_with(sql, options)),
            Err(e) => Err(EngineError::Query(format!("starting a query runtime: {e}"))),
        }
    }
}
