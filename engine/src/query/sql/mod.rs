//! SQL over the state of a running application (DataFusion): every persistent store of the
//! topology is a table of the same name, read from committed state.
//!
//! 1. A query gets a fresh session: each store's table is registered with a schema inferred
//!    from a sample of its rows (so columns follow what the store holds now).
//! 2. DataFusion plans the query read-only (no DDL, no DML, no `SET`); `key = …` and
//!    `key IN (…)` become point lookups in the scan (`EXPLAIN` shows `read=lookup` or
//!    `read=scan`), everything else DataFusion evaluates.
//! 3. Each store partition held here is read as of one commit; the answer carries the
//!    position (input offsets) of every partition it read and which partitions those were.
//!
//! ```no_run
//! # fn demo(app: &eddy_engine::KafkaStreams) -> eddy_engine::Result<()> {
//! let answer = app.queries().sql("SELECT key, value FROM \"word-counts\" WHERE key = 'hello'")?;
//! println!("{}", answer.to_json()?);
//! # Ok(()) }
//! ```

mod pushdown;
mod read;
mod rows;
mod table;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use eddy_state::StoreKind;
use parking_lot::Mutex;

use crate::error::{EngineError, Result};
use crate::query::StateQueries;

use read::{KeyPredicate, StoreSource};
use table::StoreTable;

/// Rows sampled per partition to infer a table's columns.
const SAMPLE_ROWS: usize = 100;

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

fn query_error(e: datafusion::error::DataFusionError) -> EngineError {
    match e {
        datafusion::error::DataFusionError::External(inner) => {
            match inner.downcast::<EngineError>() {
                Ok(engine) => *engine,
                Err(other) => EngineError::Query(other.to_string()),
            }
        }
        other => EngineError::Query(other.to_string()),
    }
}

impl StateQueries {
    /// Runs a read-only SQL query over the stores this instance holds.
    pub async fn sql_async(&self, sql: &str) -> Result<SqlAnswer> {
        let ctx = SessionContext::new();
        let positions = Arc::new(Mutex::new(BTreeMap::new()));
        for (def, stores) in self.definitions() {
            let Some(json) = def.json.clone() else {
                continue;
            };
            if !def.spec.persistent || matches!(def.spec.kind, StoreKind::Session { .. }) {
                continue;
            }
            let source = StoreSource {
                spec: def.spec.clone(),
                json,
                stores: Arc::clone(stores),
            };
            let mut sample = Vec::new();
            for partition in source.partitions() {
                if let Some(read) = source.read(partition, &KeyPredicate::All, Some(SAMPLE_ROWS))? {
                    sample.extend(read.rows);
                }
            }
            let windowed = matches!(def.spec.kind, StoreKind::Window { .. });
            let scalar_key = sample
                .first()
                .is_none_or(|row| row.get(pushdown::KEY).is_some());
            let schema = rows::infer_schema(&sample, windowed, scalar_key, &source.json)?;
            let table = StoreTable {
                source,
                schema,
                positions: Arc::clone(&positions),
            };
            ctx.register_table(def.spec.name.as_str(), Arc::new(table))
                .map_err(query_error)?;
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(query_error)?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(query_error)?;
        let position = std::mem::take(&mut *positions.lock());
        Ok(SqlAnswer {
            schema,
            batches,
            position,
        })
    }

    /// [`StateQueries::sql_async`], waiting for the answer on this thread.
    pub fn sql(&self, sql: &str) -> Result<SqlAnswer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| EngineError::Query(format!("starting a query runtime: {e}")))?;
        runtime.block_on(self.sql_async(sql))
    }
}
