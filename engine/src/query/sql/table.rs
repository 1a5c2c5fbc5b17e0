//! A store as a DataFusion table: a [`TableProvider`] whose scan is a [`StoreScanExec`] with one
//! DataFusion partition per store partition held here, reading point lookups when the query
//! names keys and the whole partition otherwise.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use parking_lot::Mutex;

use crate::query::sql::pushdown::key_points;
use crate::query::sql::read::{KeyPredicate, StoreSource};
use crate::query::sql::rows::to_batch;

/// Where the scans of one query note the position each partition was read at.
pub(crate) type PositionSink = Arc<Mutex<BTreeMap<(String, i32), i64>>>;

/// The most rows one scan of one partition reads before the query fails (not a silent cut).
pub(crate) const MAX_SCAN_ROWS: usize = 1_000_000;

pub(crate) struct StoreTable {
    pub source: StoreSource,
    pub schema: SchemaRef,
    pub positions: PositionSink,
}

impl std::fmt::Debug for StoreTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTable")
            .field("store", &self.source.spec.name)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let scalar_key = self.schema.field_with_name(super::pushdown::KEY).is_ok();
        Ok(filters
            .iter()
            .map(|f| match key_points(f) {
                Some(_) if scalar_key => TableProviderFilterPushDown::Exact,
                _ => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Every filter passed here is a key lookup (the others were refused above): the keys
        // wanted are those every one of them names.
        let mut points: Option<Vec<Vec<u8>>> = None;
        for filter in filters {
            let Some(values) = key_points(filter) else {
                continue;
            };
            let keys: Vec<Vec<u8>> = values
                .iter()
                .filter_map(|v| (self.source.json.key_from_json)(v).ok())
                .collect();
            points = Some(match points {
                None => keys,
                Some(before) => before.into_iter().filter(|k| keys.contains(k)).collect(),
            });
        }
        let keys = points.map_or(KeyPredicate::All, KeyPredicate::Points);
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let partitions = self.source.partitions();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&projected)),
            Partitioning::UnknownPartitioning(partitions.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(StoreScanExec {
            source: self.source.clone(),
            schema: Arc::clone(&self.schema),
            projection: projection.cloned(),
            keys,
            limit,
            partitions,
            positions: Arc::clone(&self.positions),
            properties,
        }))
    }
}

/// The scan of one store: partition `i` of the plan reads the `i`th store partition held here.
pub(crate) struct StoreScanExec {
    source: StoreSource,
    /// The table's whole schema (rows are decoded whole, then projected).
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    keys: KeyPredicate,
    limit: Option<usize>,
    partitions: Vec<i32>,
    positions: PositionSink,
    properties: Arc<PlanProperties>,
}

impl std::fmt::Debug for StoreScanExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreScanExec")
            .field("store", &self.source.spec.name)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for StoreScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let read = match &self.keys {
            KeyPredicate::All => "scan".to_string(),
            KeyPredicate::Points(k) => format!("lookup of {} key(s)", k.len()),
        };
        write!(
            f,
            "StoreScan: store={}, read={read}, partitions={:?}",
            self.source.spec.name, self.partitions
        )?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StoreScanExec {
    fn name(&self) -> &str {
        "StoreScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let projected = self.properties.eq_properties.schema().clone();
        let Some(&store_partition) = self.partitions.get(partition) else {
            // No partition held here: an empty answer for this (only) plan partition.
            return Ok(Box::pin(MemoryStream::try_new(vec![], projected, None)?));
        };
        let name = &self.source.spec.name;
        let cap = self
            .limit
            .unwrap_or(MAX_SCAN_ROWS + 1)
            .min(MAX_SCAN_ROWS + 1);
        let read = self
            .source
            .read(store_partition, &self.keys, Some(cap))
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "partition {store_partition} of store `{name}` moved while the query ran; \
                     ask again"
                ))
            })?;
        if self.limit.is_none() && read.rows.len() > MAX_SCAN_ROWS {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the scan of `{name}` partition {store_partition} passed {MAX_SCAN_ROWS} rows; \
                 narrow the query (a key, a LIMIT)"
            )));
        }
        {
            let mut positions = self.positions.lock();
            for (topic, offset) in read.position {
                positions.insert((topic, store_partition), offset);
            }
        }
        let batch = to_batch(&self.schema, &read.rows)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let batch = match &self.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        };
        Ok(Box::pin(MemoryStream::try_new(
            vec![batch],
            projected,
            None,
        )?))
    }
}
