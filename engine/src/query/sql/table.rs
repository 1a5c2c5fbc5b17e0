//! A store as a DataFusion table: a [`TableProvider`] whose scan is a [`StoreScanExec`] with one
//! DataFusion partition per store partition (read here or from its owner), reading point
//! lookups when the query names keys and the whole partition otherwise; a lookup without a
//! minimum position reads only the partitions its keys hash to (`lookup.rs`).

use std::ops::Bound;
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
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use futures::StreamExt;

use crate::query::sql::lookup;
use crate::query::sql::pushdown::{key_points, key_range, window_range};
use crate::query::sql::read::{KeyPredicate, PartitionScan, StoreSource, ALL_TIME};
use crate::query::sql::shipped_filter::shippable;
use crate::query::sql::{QueryScope, StatementScope};
use crate::serdes::SerdeKind;

pub(crate) struct StoreTable {
    pub source: StoreSource,
    pub schema: SchemaRef,
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
        Ok(filters
            .iter()
            .map(|f| match self.classify(f) {
                FilterUse::Points(_) | FilterUse::Range(..) => TableProviderFilterPushDown::Exact,
                // Window bounds narrow the read; other filters go to remote owners
                // (`shipped_filter.rs`). DataFusion applies both again.
                FilterUse::Window(..) | FilterUse::Shipped(_) => {
                    TableProviderFilterPushDown::Inexact
                }
                FilterUse::Evaluated => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The filters passed here are those accepted above, all of which hold: the keys wanted
        // are those every lookup names, within every range; the windows those in every bound.
        let mut points: Option<Vec<Vec<u8>>> = None;
        let mut range = KeyPredicate::Range(Bound::Unbounded, Bound::Unbounded);
        let mut ranged = false;
        let mut window = ALL_TIME;
        let mut shipped = Vec::new();
        for filter in filters {
            match self.classify(filter) {
                FilterUse::Points(keys) => {
                    points = Some(match points {
                        None => keys,
                        Some(before) => before.into_iter().filter(|k| keys.contains(k)).collect(),
                    });
                }
                FilterUse::Range(lo, hi) => {
                    ranged = true;
                    range = narrow(range, lo, hi);
                }
                FilterUse::Window(from, to) => window = (window.0.max(from), window.1.min(to)),
                FilterUse::Shipped(text) => shipped.push(text),
                FilterUse::Evaluated => {}
            }
        }
        let keys = match points {
            Some(mut points) => {
                // `key IN ('a', 'a')` names one row.
                points.sort();
                points.dedup();
                KeyPredicate::Points(points.into_iter().filter(|k| range.admits(k)).collect())
            }
            None if ranged => range,
            None => KeyPredicate::All,
        };
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let partitions = self
            .source
            .all_partitions()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        // Lookups go to the partitions their keys hash to (`lookup.rs`), in one plan
        // partition; not under a minimum position, which every partition must be checked for.
        let scope = state
            .config()
            .get_extension::<QueryScope>()
            .unwrap_or_default()
            .statement();
        scope.plan(&self.source.inputs, &partitions);
        let bounded = scope.bounded();
        let routed = matches!(keys, KeyPredicate::Points(_))
            && self.source.keyed_by_record_key
            && partitions.len() > 1
            && !bounded;
        let plan_partitions = if routed { 1 } else { partitions.len().max(1) };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&projected)),
            Partitioning::UnknownPartitioning(plan_partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(StoreScanExec {
            source: self.source.clone(),
            schema: Arc::clone(&self.schema),
            projection: projection.cloned(),
            keys,
            window,
            filters: shipped,
            limit,
            partitions,
            routed,
            scope,
            properties,
        }))
    }
}

/// What a scan does with one filter: the same answer when DataFusion asks whether it can be
/// pushed and when the scan is planned with it.
enum FilterUse {
    /// A lookup of these keys (their bytes): exact.
    Points(Vec<Vec<u8>>),
    /// A bounded scan of text keys: exact.
    Range(Bound<String>, Bound<String>),
    /// Window starts within these (both ends inclusive): the read is narrowed.
    Window(i64, i64),
    /// Shipped to remote owners as this SQL text.
    Shipped(String),
    /// Left to DataFusion alone.
    Evaluated,
}

impl StoreTable {
    fn classify(&self, f: &Expr) -> FilterUse {
        // Lookups only on keys whose serde is a string or an integer (a JSON key's column may be
        // anything, even a value field named `key`), when every value named is a key of that
        // serde; ranges only on strings, whose bytes sort as SQL compares them.
        let key_kind = self.source.json.key_kind;
        let scalar_key = matches!(key_kind, SerdeKind::Text | SerdeKind::Integer)
            && self.schema.field_with_name(super::pushdown::KEY).is_ok();
        let ordered_key = scalar_key && key_kind == SerdeKind::Text;
        let windowed = !matches!(self.source.spec.kind, eddy_state::StoreKind::KeyValue);
        if scalar_key {
            if let Some(values) = key_points(f, key_kind) {
                let keys: Option<Vec<Vec<u8>>> = values
                    .iter()
                    .map(|v| (self.source.json.key_from_json)(v).ok())
                    .collect();
                if let Some(keys) = keys {
                    return FilterUse::Points(keys);
                }
            }
        }
        if ordered_key {
            if let Some((lo, hi)) = key_range(f) {
                return FilterUse::Range(lo, hi);
            }
        }
        if windowed {
            if let Some((from, to)) = window_range(f) {
                return FilterUse::Window(from, to);
            }
        }
        match shippable(f, &self.schema) {
            Some(text) => FilterUse::Shipped(text),
            None => FilterUse::Evaluated,
        }
    }
}

/// `range` narrowed to the text bounds `lo`..`hi` as well (a text key's bytes are its UTF-8).
fn narrow(range: KeyPredicate, lo: Bound<String>, hi: Bound<String>) -> KeyPredicate {
    let KeyPredicate::Range(old_lo, old_hi) = range else {
        return range;
    };
    let bytes = |b: Bound<String>| b.map(String::into_bytes);
    let (lo, hi) = (bytes(lo), bytes(hi));
    // The higher lower bound and the lower upper bound; at a tie the excluding one.
    let lower = match (&old_lo, &lo) {
        (Bound::Unbounded, _) => lo,
        (_, Bound::Unbounded) => old_lo,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            if a > b || (a == b && matches!(old_lo, Bound::Excluded(_))) {
                old_lo
            } else {
                lo
            }
        }
    };
    let upper = match (&old_hi, &hi) {
        (Bound::Unbounded, _) => hi,
        (_, Bound::Unbounded) => old_hi,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            if a < b || (a == b && matches!(old_hi, Bound::Excluded(_))) {
                old_hi
            } else {
                hi
            }
        }
    };
    KeyPredicate::Range(lower, upper)
}

/// The scan of one store: partition `i` of the plan reads the `i`th store partition.
pub(crate) struct StoreScanExec {
    source: StoreSource,
    /// The table's whole schema (rows are decoded whole, then projected).
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    keys: KeyPredicate,
    window: (i64, i64),
    /// Filters shipped to remote owners (`shipped_filter.rs`).
    filters: Vec<String>,
    limit: Option<usize>,
    partitions: Vec<i32>,
    /// A lookup routed by key hash (`lookup.rs`): one plan partition reads them all.
    routed: bool,
    /// The bound and position sink of the statement this scan was planned for.
    scope: StatementScope,
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
            KeyPredicate::Points(k) if self.routed => {
                format!(
                    "lookup of {} key(s) in the partitions they hash to",
                    k.len()
                )
            }
            KeyPredicate::Points(k) => format!("lookup of {} key(s)", k.len()),
            KeyPredicate::Range(lo, hi) => {
                let text = |k: &Vec<u8>| String::from_utf8_lossy(k).into_owned();
                let lower = match lo {
                    Bound::Included(k) => format!("[{}", text(k)),
                    Bound::Excluded(k) => format!("({}", text(k)),
                    Bound::Unbounded => "(".to_string(),
                };
                let upper = match hi {
                    Bound::Included(k) => format!("{}]", text(k)),
                    Bound::Excluded(k) => format!("{})", text(k)),
                    Bound::Unbounded => ")".to_string(),
                };
                format!("range scan of keys {lower}, {upper}")
            }
        };
        let window = match self.window {
            ALL_TIME => String::new(),
            (from, to) => format!(", windows starting {from}..={to}"),
        };
        write!(
            f,
            "StoreScan: store={}, read={read}{window}, partitions={:?}",
            self.source.spec.name, self.partitions
        )?;
        if !self.filters.is_empty() {
            write!(f, ", shipped_filters=[{}]", self.filters.join(", "))?;
        }
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
        let scope = self.scope.clone();
        if let (true, KeyPredicate::Points(keys)) = (self.routed, &self.keys) {
            let scan = PartitionScan {
                keys: KeyPredicate::All,
                window: self.window,
                filters: self.filters.clone(),
                limit: self.limit,
                schema: Arc::clone(&self.schema),
                projection: self.projection.clone(),
                min_position: Default::default(),
                wait: scope.wait,
            };
            let (source, keys, partitions) =
                (self.source.clone(), keys.clone(), self.partitions.clone());
            let read = async move {
                lookup::lookup(&source, &keys, &partitions, &scan, &scope)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            };
            let batches = futures::stream::once(read).flat_map(|r| match r {
                Ok(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            });
            return Ok(Box::pin(RecordBatchStreamAdapter::new(projected, batches)));
        }
        let Some(&store_partition) = self.partitions.get(partition) else {
            // No partition at all: an empty answer for this (only) plan partition.
            let empty = futures::stream::empty();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(projected, empty)));
        };
        let scan = PartitionScan {
            keys: self.keys.clone(),
            window: self.window,
            filters: self.filters.clone(),
            limit: self.limit,
            schema: Arc::clone(&self.schema),
            projection: self.projection.clone(),
            min_position: scope.bound(store_partition),
            wait: scope.wait,
        };
        let source = self.source.clone();
        let read = async move {
            let (batch, position) = source
                .scan_partition(store_partition, &scan)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            scope.note(store_partition, position);
            Ok(batch)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            projected,
            futures::stream::once(read),
        )))
    }
}
