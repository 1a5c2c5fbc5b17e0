//! Reads one partition of a store for SQL: its entries (all, or only the keys asked for),
//! decoded to rows, as of one commit, with the position they reflect.

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_state::{BuiltStore, StoreSpec};
use serde_json::Value;

use crate::error::Result;
use crate::query::sql::rows::Entry;
use crate::query::{read_partition, QueryableStores, StoreJson};

/// Which entries a scan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyPredicate {
    /// Every entry.
    All,
    /// The entries of these keys (their bytes): point lookups.
    Points(Vec<Vec<u8>>),
}

/// What one partition gave: its rows and the input offsets they reflect.
pub(crate) struct PartitionRows {
    pub rows: Vec<Value>,
    pub position: BTreeMap<String, i64>,
}

/// A store of this instance that SQL reads.
#[derive(Clone)]
pub(crate) struct StoreSource {
    pub spec: StoreSpec,
    pub json: StoreJson,
    pub stores: Arc<QueryableStores>,
}

impl StoreSource {
    /// The partitions held here now.
    pub fn partitions(&self) -> Vec<i32> {
        self.stores.live_partitions(&self.spec.name)
    }

    /// Up to `limit` rows of `partition` matching `keys`; `None` when the partition is not
    /// held here (any more).
    pub fn read(
        &self,
        partition: i32,
        keys: &KeyPredicate,
        limit: Option<usize>,
    ) -> Result<Option<PartitionRows>> {
        let Some(db) = self.stores.partition(&self.spec.name, partition) else {
            return Ok(None);
        };
        let limit = limit.unwrap_or(usize::MAX);
        let name = self.spec.name.clone();
        let (raw, position) = read_partition(&self.spec, &db, &mut |store| {
            let mut out: Vec<(Vec<u8>, Option<i64>, Vec<u8>)> = Vec::new();
            match (store, keys) {
                (BuiltStore::KeyValue(s), KeyPredicate::Points(points)) => {
                    for k in points {
                        if let Some(v) = s.get(k)? {
                            out.push((k.clone(), None, v));
                        }
                    }
                }
                (BuiltStore::KeyValue(s), KeyPredicate::All) => {
                    for item in s.all()?.take(limit) {
                        let (k, v) = item?;
                        out.push((k, None, v));
                    }
                }
                (BuiltStore::Window(w), keys) => {
                    for e in w.all()? {
                        let wanted = match keys {
                            KeyPredicate::All => true,
                            KeyPredicate::Points(points) => points.contains(&e.key),
                        };
                        if wanted {
                            out.push((e.key, Some(e.start), e.value));
                        }
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
                (BuiltStore::Session(_), _) => {}
            }
            Ok(out)
        })?;
        if !self.stores.holds(&name, partition, &db) {
            return Ok(None);
        }
        let rows = raw
            .iter()
            .map(|(k, start, v)| {
                Entry::decode(&self.json, &name, k, *start, v, partition).map(|e| e.row())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(PartitionRows { rows, position }))
    }
}
