//! Which persistent stores of this instance can be queried now, per partition: those of the
//! tasks that are open and restored. A task registers its stores once it is initialized and
//! removes them when it closes; the registry holds its database weakly, so a closed task's
//! database is not kept open by it (a query holds it only while it reads).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use eddy_state::RocksDbInstance;
use parking_lot::RwLock;

/// Store name → partition → the database of the task that holds it.
#[derive(Debug, Default)]
pub(crate) struct QueryableStores {
    partitions: RwLock<BTreeMap<String, BTreeMap<i32, Weak<RocksDbInstance>>>>,
    /// Store name → how many partitions it has in all (known once the application started).
    counts: RwLock<BTreeMap<String, i32>>,
}

impl QueryableStores {
    /// Each store's partition count, from the topics at start.
    pub fn set_partition_counts(&self, counts: BTreeMap<String, i32>) {
        *self.counts.write() = counts;
    }

    /// How many partitions `store` has in all, if known.
    pub fn partition_count(&self, store: &str) -> Option<i32> {
        self.counts.read().get(store).copied()
    }

    /// Every store with the partitions held here now (what this instance publishes).
    pub fn live(&self) -> BTreeMap<String, Vec<i32>> {
        self.partitions
            .read()
            .iter()
            .map(|(store, parts)| {
                let live = parts
                    .iter()
                    .filter(|(_, db)| db.strong_count() > 0)
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>();
                (store.clone(), live)
            })
            .filter(|(_, live)| !live.is_empty())
            .collect()
    }

    /// A running task's persistent `stores` of `partition` can be queried.
    pub fn register(&self, stores: &[String], partition: i32, db: &Arc<RocksDbInstance>) {
        let mut partitions = self.partitions.write();
        for store in stores {
            partitions
                .entry(store.clone())
                .or_default()
                .insert(partition, Arc::downgrade(db));
        }
    }

    /// The task holding `stores` of `partition` in `db` closed.
    pub fn deregister(&self, stores: &[String], partition: i32, db: &Arc<RocksDbInstance>) {
        let mut partitions = self.partitions.write();
        for store in stores {
            if let Some(p) = partitions.get_mut(store) {
                // Only its own entry: another thread's task may hold the partition by now.
                if p.get(&partition)
                    .is_some_and(|w| w.ptr_eq(&Arc::downgrade(db)))
                {
                    p.remove(&partition);
                }
            }
        }
    }

    /// The partitions of `store` held here now, with their databases (weakly: a query holds
    /// each only while it reads it).
    pub fn partitions(&self, store: &str) -> Vec<(i32, Weak<RocksDbInstance>)> {
        self.partitions
            .read()
            .get(store)
            .into_iter()
            .flatten()
            .map(|(p, db)| (*p, Weak::clone(db)))
            .collect()
    }

    /// The partitions of `store` whose task is open now.
    pub fn live_partitions(&self, store: &str) -> Vec<i32> {
        self.partitions(store)
            .into_iter()
            .filter(|(_, db)| db.strong_count() > 0)
            .map(|(p, _)| p)
            .collect()
    }

    /// The database holding `partition` of `store`, if its task is open.
    pub fn partition(&self, store: &str, partition: i32) -> Option<Arc<RocksDbInstance>> {
        self.partitions
            .read()
            .get(store)?
            .get(&partition)?
            .upgrade()
    }

    /// Whether `db` still holds `partition` of `store`.
    pub fn holds(&self, store: &str, partition: i32, db: &Arc<RocksDbInstance>) -> bool {
        self.partitions
            .read()
            .get(store)
            .and_then(|p| p.get(&partition))
            .is_some_and(|w| w.ptr_eq(&Arc::downgrade(db)))
    }
}
