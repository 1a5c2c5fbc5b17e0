//! The stores as DataFusion's `public` schema: one table per persistent key-value or window
//! store, its columns declared by its key and value types (`declared.rs`) while its rows fit
//! them, inferred from a sample of its rows otherwise, and kept for a second by every
//! session of the application, so that queries (each its own session) and catalog listings
//! (psql's `\d`, which asks for every table) cost a sample per store at most once a second,
//! and a table's columns still follow what the store holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use eddy_state::StoreKind;
use parking_lot::Mutex;

use crate::error::Result;
use crate::query::sql::read::{KeyPredicate, StoreSource, ALL_TIME};
use crate::query::sql::rows::Row;
use crate::query::sql::{pushdown, rows, table::StoreTable};
use crate::query::StateQueries;

/// Rows sampled per partition to infer a table's columns.
const SAMPLE_ROWS: usize = 100;

/// How long an inferred schema is reused.
const SCHEMA_TTL: Duration = Duration::from_secs(1);

/// Each table's columns.
#[derive(Default)]
pub(crate) struct SchemaCache(Mutex<HashMap<String, Cached>>);

struct Cached {
    at: Instant,
    schema: SchemaRef,
}

/// The stores of [`StateQueries`] as a schema of tables.
pub(crate) struct StoreCatalog {
    queries: StateQueries,
}

impl std::fmt::Debug for StoreCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCatalog").finish_non_exhaustive()
    }
}

impl StoreCatalog {
    pub fn new(queries: StateQueries) -> Self {
        Self { queries }
    }

    async fn schema_of(&self, source: &StoreSource) -> Result<SchemaRef> {
        let name = &source.spec.name;
        if let Some(cached) = self.queries.schemas.0.lock().get(name) {
            if cached.at.elapsed() < SCHEMA_TTL {
                return Ok(Arc::clone(&cached.schema));
            }
        }
        let windowed = !matches!(source.spec.kind, StoreKind::KeyValue);
        let window_end = matches!(source.spec.kind, StoreKind::Session { .. })
            || source.window_size_ms.is_some();
        let mut sample = Vec::new();
        for partition in source.local_partitions() {
            if let Some(read) = source.read(
                partition,
                &KeyPredicate::All,
                ALL_TIME,
                Some(SAMPLE_ROWS),
                true,
            )? {
                sample.extend(read.rows.iter().map(Row::to_value));
            }
        }
        let declared = source
            .json
            .declared()
            .map(|(key, value)| rows::declared_schema(key, value, windowed, window_end));
        if declared.is_some() && sample.is_empty() {
            // Nothing here to check the declared columns against: the other owners' rows.
            sample = source.remote_sample(SAMPLE_ROWS).await;
        }
        let (schema, cacheable) = match declared {
            // The types' own columns, as long as the rows fit them (a type may write other
            // JSON than it reads, or hold an enum variant the trace did not see).
            Some(schema) if rows::fits(&schema, &sample) => (schema, true),
            Some(_) => {
                tracing::warn!(store = %name,
                    "the store's rows do not fit the columns its types declare; inferring them");
                self.infer(source, sample, windowed, window_end).await?
            }
            None => self.infer(source, sample, windowed, window_end).await?,
        };
        if !cacheable {
            // Columns guessed with no row to go by: the first row must decide them at once.
            return Ok(schema);
        }
        self.queries.schemas.0.lock().insert(
            name.clone(),
            Cached {
                at: Instant::now(),
                schema: Arc::clone(&schema),
            },
        );
        Ok(schema)
    }

    /// The columns of rows like `sample` (from the owners of other partitions when it is
    /// empty), and whether they may be cached (some row was there to infer them from).
    async fn infer(
        &self,
        source: &StoreSource,
        mut sample: Vec<serde_json::Value>,
        windowed: bool,
        window_end: bool,
    ) -> Result<(SchemaRef, bool)> {
        if sample.is_empty() {
            // Nothing here: the owners of the other partitions give the sample.
            sample = source.remote_sample(SAMPLE_ROWS).await;
        }
        let scalar_key = sample
            .first()
            .is_none_or(|row| row.get(pushdown::KEY).is_some());
        let schema = rows::infer_schema(&sample, windowed, window_end, scalar_key, &source.json)?;
        Ok((schema, !sample.is_empty()))
    }
}

#[async_trait]
impl SchemaProvider for StoreCatalog {
    fn table_names(&self) -> Vec<String> {
        self.queries
            .definitions()
            .map(|(def, _)| def.spec.name.clone())
            .filter(|name| self.queries.source(name).is_some())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(source) = self.queries.source(name) else {
            return Ok(None);
        };
        let schema = self
            .schema_of(&source)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(Arc::new(StoreTable { source, schema })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.queries.source(name).is_some()
    }
}
