//! The transaction buffer: holds a store's writes until the transaction that logged them has
//! committed, so that local state never contains an aborted change.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::batch::StateBatch;
use crate::error::Result;
use crate::memory_budget::{Charge, MemoryBudget};
use crate::merge::OverlayIter;
use crate::store::{bounds_inverted, in_bounds, KeyValueStore, KvIter};

/// Sits below the change-logging layer: every change is sent to the changelog at once but reaches
/// the store below only through [`KeyValueStore::commit_into`], which the task calls after the
/// transaction committed — for RocksDB stores in one write batch with the task's checkpoint.
/// Reads see the pending writes (read-your-writes). An abort drops the buffer with the task.
pub struct TransactionBufferKeyValueStore<S> {
    inner: S,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Ranges removed since the last commit (time segments dropped by retention).
    range_deletes: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of keys and values held, as a share of the instance's
    /// `statestore.uncommitted.max.bytes`: past it the store asks for a commit (so that a long
    /// commit interval cannot grow the buffers without bound).
    charge: Charge,
}

impl<S: KeyValueStore> std::fmt::Debug for TransactionBufferKeyValueStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionBufferKeyValueStore")
            .field("name", &self.inner.name())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<S: KeyValueStore> TransactionBufferKeyValueStore<S> {
    /// Buffers the writes to `inner` until they commit, however many.
    pub fn new(inner: S) -> Self {
        Self::with_max_bytes(inner, usize::MAX)
    }

    /// Buffers the writes to `inner` until they commit; past `max_bytes` the store asks for a
    /// commit ([`KeyValueStore::cache_full`]).
    pub fn with_max_bytes(inner: S, max_bytes: usize) -> Self {
        Self::with_budget(inner, &MemoryBudget::new(max_bytes))
    }

    /// Buffers the writes to `inner` until they commit, asking for a commit once the pending
    /// writes of every store that shares `budget` are over it.
    pub fn with_budget(inner: S, budget: &std::sync::Arc<MemoryBudget>) -> Self {
        Self {
            inner,
            pending: BTreeMap::new(),
            range_deletes: Vec::new(),
            charge: MemoryBudget::charge(budget),
        }
    }

    fn hold(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.charge
            .add(key.len() + value.as_ref().map_or(0, Vec::len));
        if let Some(old) = self.pending.insert(key.to_vec(), value) {
            self.charge.sub(key.len() + old.map_or(0, |v| v.len()));
        }
    }

    /// The number of keys written since the last commit.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn range_deleted(&self, key: &[u8]) -> bool {
        self.range_deletes
            .iter()
            .any(|(from, to)| key >= from.as_slice() && key < to.as_slice())
    }
}

impl<S: KeyValueStore> KeyValueStore for TransactionBufferKeyValueStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.pending.get(key) {
            Some(value) => Ok(value.clone()),
            None if self.range_deleted(key) => Ok(None),
            None => self.inner.get(key),
        }
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.hold(key, Some(value.to_vec()));
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.get(key)?;
        self.hold(key, None);
        Ok(old)
    }
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>> {
        if bounds_inverted(from, to) {
            return Ok(Box::new(std::iter::empty()));
        }
        let pending = self
            .pending
            .range::<[u8], _>((from, to))
            .map(|(k, v)| (k.clone(), v.clone()));
        let stored = self.inner.range(from, to)?;
        let stored: KvIter<'a> = if self.range_deletes.is_empty() {
            stored
        } else {
            Box::new(stored.filter(move |item| match item {
                Ok((k, _)) => !self.range_deleted(k),
                Err(_) => true,
            }))
        };
        Ok(Box::new(OverlayIter::new(pending, stored)))
    }
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let (lo, hi) = (Bound::Included(from), Bound::Excluded(to));
        let mut dropped = 0;
        self.pending.retain(|k, v| {
            let keep = !in_bounds(k, lo, hi);
            if !keep {
                dropped += k.len() + v.as_ref().map_or(0, Vec::len);
            }
            keep
        });
        self.charge.sub(dropped);
        self.range_deletes.push((from.to_vec(), to.to_vec()));
        Ok(())
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        Ok(self.inner.approximate_num_entries()? + self.pending.len() as u64)
    }
    fn flush(&mut self) -> Result<()> {
        // Durability comes with the commit, not with a flush.
        Ok(())
    }
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.hold(key, value.map(<[u8]>::to_vec));
        Ok(())
    }
    fn cache_full(&self) -> bool {
        self.charge.exceeded()
    }
    fn commit_into(&mut self, batch: &mut StateBatch) -> Result<()> {
        let ranges = std::mem::take(&mut self.range_deletes);
        let pending = std::mem::take(&mut self.pending);
        self.charge.set(0);
        if self.inner.persistent() {
            let name = self.inner.name().to_string();
            for (from, to) in ranges {
                batch.delete_range(&name, from, to);
            }
            for (key, value) in pending {
                match value {
                    Some(v) => batch.put(&name, key, v),
                    None => batch.delete(&name, key),
                }
            }
        } else {
            // An in-memory store has no checkpoint to keep atomic with: apply in place.
            for (from, to) in ranges {
                self.inner.delete_range(&from, &to)?;
            }
            for (key, value) in pending {
                match value {
                    Some(v) => self.inner.put(&key, &v)?,
                    None => {
                        self.inner.delete(&key)?;
                    }
                }
            }
        }
        Ok(())
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ops::Bound;
    use std::sync::Arc;

    use super::*;
    use crate::batch::Checkpoint;
    use crate::memory::InMemoryKeyValueStore;
    use crate::rocks::{RocksDbEnv, RocksDbInstance, RocksDbMemoryConfig};

    /// A small deterministic generator, so that a failing sequence can be replayed.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn key(n: u64) -> Vec<u8> {
        vec![b'k', n as u8]
    }

    fn all(s: &dyn KeyValueStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        s.all().unwrap().map(Result::unwrap).collect()
    }

    /// Random puts, deletes, range deletes and commits against a `BTreeMap` model: reads always
    /// see every write; the store below only what was committed.
    fn run_model(inner: Box<dyn KeyValueStore>, db: Option<Arc<RocksDbInstance>>, seed: u64) {
        let mut rng = Lcg(seed);
        let mut store = TransactionBufferKeyValueStore::new(inner);
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut committed = model.clone();
        for step in 0..2_000 {
            match rng.next(10) {
                0..=4 => {
                    let (k, v) = (key(rng.next(40)), vec![rng.next(255) as u8]);
                    store.put(&k, &v).unwrap();
                    model.insert(k, v);
                }
                5 | 6 => {
                    let k = key(rng.next(40));
                    assert_eq!(store.delete(&k).unwrap(), model.remove(&k), "step {step}");
                }
                7 => {
                    let (a, b) = (rng.next(40), rng.next(40));
                    let (from, to) = (key(a.min(b)), key(a.max(b)));
                    store.delete_range(&from, &to).unwrap();
                    model.retain(|k, _| !(k >= &from && k < &to));
                }
                _ => {
                    let mut batch = StateBatch::new();
                    store.commit_into(&mut batch).unwrap();
                    if let Some(db) = &db {
                        db.commit(batch, &Checkpoint::default()).unwrap();
                    } else {
                        assert!(batch.is_empty(), "in-memory stores apply in place");
                    }
                    committed = model.clone();
                    assert_eq!(store.pending_len(), 0);
                }
            }
            let expected: Vec<_> = model.clone().into_iter().collect();
            assert_eq!(all(&store), expected, "step {step}");
            assert_eq!(
                all(&store.inner),
                committed.clone().into_iter().collect::<Vec<_>>(),
                "the store below holds exactly the committed writes (step {step})"
            );
            let (a, b) = (key(rng.next(40)), key(rng.next(40)));
            let scanned: Vec<_> = store
                .range(Bound::Included(&a), Bound::Excluded(&b))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let wanted: Vec<_> = if a < b {
                model
                    .range(a.clone()..b.clone())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            assert_eq!(scanned, wanted, "range at step {step}");
        }
    }

    #[test]
    fn buffered_writes_match_a_model_in_memory() {
        for seed in 1..4 {
            run_model(Box::new(InMemoryKeyValueStore::new("m")), None, seed);
        }
    }

    #[test]
    fn buffered_writes_match_a_model_on_rocksdb() {
        let env = RocksDbEnv::new(RocksDbMemoryConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let db = RocksDbInstance::open(&env, dir.path()).unwrap();
        for seed in 1..4 {
            let inner = db.key_value_store(&format!("r{seed}")).unwrap();
            run_model(Box::new(inner), Some(Arc::clone(&db)), seed);
        }
    }

    #[test]
    fn a_full_buffer_asks_for_a_commit() {
        let mut store =
            TransactionBufferKeyValueStore::with_max_bytes(InMemoryKeyValueStore::new("f"), 100);
        for i in 0..9u8 {
            store.put(&[i], &[0; 10]).unwrap();
        }
        assert!(!store.cache_full(), "99 bytes held");
        store.put(b"k", &[0; 10]).unwrap();
        assert!(store.cache_full(), "110 bytes held");
        store.put(b"k", &[]).unwrap();
        assert!(
            !store.cache_full(),
            "an overwrite replaces the old size: 100 bytes"
        );
        store.delete_range(&[0], &[5]).unwrap();
        store.put(b"big", &[0; 40]).unwrap();
        assert!(
            !store.cache_full(),
            "a range delete frees its entries: 88 bytes"
        );
        store.put(b"bigger", &[0; 60]).unwrap();
        assert!(store.cache_full());
        store.commit_into(&mut StateBatch::new()).unwrap();
        assert!(!store.cache_full(), "a commit empties the buffer");
    }

    #[test]
    fn uncommitted_writes_never_reach_rocksdb() {
        let env = RocksDbEnv::new(RocksDbMemoryConfig::default());
        let dir = tempfile::tempdir().unwrap();
        {
            let db = RocksDbInstance::open(&env, dir.path()).unwrap();
            let mut store = TransactionBufferKeyValueStore::new(db.key_value_store("s").unwrap());
            store.put(b"a", b"committed").unwrap();
            let mut batch = StateBatch::new();
            store.commit_into(&mut batch).unwrap();
            let mut checkpoint = Checkpoint::default();
            checkpoint.changelog_offsets.insert("s".into(), 10);
            db.commit(batch, &checkpoint).unwrap();
            store.put(b"a", b"aborted").unwrap();
            store.put(b"b", b"aborted").unwrap();
            assert_eq!(store.get(b"a").unwrap(), Some(b"aborted".to_vec()));
            // The transaction aborts: the task drops its stores without committing them.
        }
        let db = RocksDbInstance::open(&env, dir.path()).unwrap();
        let store = db.key_value_store("s").unwrap();
        assert_eq!(
            all(&store),
            vec![(b"a".to_vec(), b"committed".to_vec())],
            "only the committed write is on disk"
        );
        assert_eq!(db.checkpoint().unwrap().changelog_offsets["s"], 10);
    }
}
