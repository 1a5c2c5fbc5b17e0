//! Key lookups routed by the key's partition, as Kafka Streams' `queryMetadataForKey` routes
//! them: a lookup reads the one partition each key hashes to, not every partition.
//!
//! 1. Each key goes to `murmur2(key bytes) % partitions`, the partition Kafka's default
//!    partitioner (and Eddy's sinks and repartition topics) writes it to.
//! 2. The partitions so named are read at once, each for its keys (here or from its owner).
//! 3. A key none of them holds is looked up in every other partition before it counts as
//!    absent, so a store fed by a producer that partitions otherwise still answers whole; it
//!    only answers slower.
//!
//! A key lives in one partition of a store that a DSL operator aggregates or materializes by
//! key (its records all go to one partition, or the aggregate itself would be split), so a key
//! found in its partition is not looked for elsewhere. Only such stores are routed; a
//! Processor API store, which may hold a key in any partition, reads every partition.
//!
//! A query with a minimum position reads every partition as usual (each must be checked
//! against its bound).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::array::{Array, Int64Array, StringArray, UInt64Array};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};
use crate::partitioner::default_partition;
use crate::query::sql::pushdown::KEY;
use crate::query::sql::read::{KeyPredicate, PartitionScan, StoreSource};
use crate::query::sql::StatementScope;

/// The keys (their bytes) of the rows of `batch`, a batch of the table's whole schema.
fn found_keys(source: &StoreSource, batch: &RecordBatch) -> BTreeSet<Vec<u8>> {
    let Some(column) = batch.column_by_name(KEY) else {
        return BTreeSet::new();
    };
    let values: Vec<serde_json::Value> =
        if let Some(text) = column.as_any().downcast_ref::<StringArray>() {
            text.iter().flatten().map(|s| s.into()).collect()
        } else if let Some(numbers) = column.as_any().downcast_ref::<Int64Array>() {
            numbers.iter().flatten().map(|n| n.into()).collect()
        } else if let Some(numbers) = column.as_any().downcast_ref::<UInt64Array>() {
            numbers.iter().flatten().map(|n| n.into()).collect()
        } else {
            // Another type: no key counts as found, so every one is looked up everywhere.
            Vec::new()
        };
    values
        .iter()
        .filter_map(|v| (source.json.key_from_json)(v).ok())
        .collect()
}

/// The rows of `keys` (module doc), each batch projected as `scan` asks; `scan.keys` is
/// ignored.
pub(crate) async fn lookup(
    source: &StoreSource,
    keys: &[Vec<u8>],
    partitions: &[i32],
    scan: &PartitionScan,
    scope: &StatementScope,
) -> Result<Vec<RecordBatch>> {
    let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
    let mut by_partition: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
    for key in keys {
        by_partition
            .entry(default_partition(key, count))
            .or_default()
            .push(key.clone());
    }
    // Whole rows, so that the keys found can be told (no filter may hide one); projected at
    // the end.
    let whole = |keys: Vec<Vec<u8>>| PartitionScan {
        keys: KeyPredicate::Points(keys),
        projection: None,
        filters: Vec::new(),
        ..scan.clone()
    };
    let first = futures::future::try_join_all(by_partition.iter().map(|(p, keys)| {
        let scan = whole(keys.clone());
        async move { source.scan_partition(*p, &scan).await.map(|r| (*p, r)) }
    }))
    .await?;
    let mut batches = Vec::new();
    let mut missing: Vec<(i32, Vec<u8>)> = Vec::new();
    for (p, (batch, position)) in first {
        let found = found_keys(source, &batch);
        missing.extend(
            by_partition[&p]
                .iter()
                .filter(|k| !found.contains(*k))
                .map(|k| (p, k.clone())),
        );
        scope.note(p, position);
        batches.push(batch);
    }
    if !missing.is_empty() {
        let elsewhere = futures::future::try_join_all(partitions.iter().filter_map(|&p| {
            let keys: Vec<Vec<u8>> = missing
                .iter()
                .filter(|(home, _)| *home != p)
                .map(|(_, k)| k.clone())
                .collect();
            (!keys.is_empty()).then(|| {
                let scan = whole(keys);
                async move { source.scan_partition(p, &scan).await.map(|r| (p, r)) }
            })
        }))
        .await?;
        for (p, (batch, position)) in elsewhere {
            scope.note(p, position);
            batches.push(batch);
        }
    }
    batches
        .into_iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| match &scan.projection {
            Some(p) => b.project(p).map_err(|e| EngineError::Query(e.to_string())),
            None => Ok(b),
        })
        .collect()
}
