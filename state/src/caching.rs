//! The caching decorator: a write-back buffer with read-your-writes that collapses repeated
//! updates of a key until the next commit flushes it.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::Result;
use crate::memory_budget::{Charge, MemoryBudget};
use crate::merge::OverlayIter;
use crate::record_time::RecordTime;
use crate::store::{bounds_inverted, FlushedEntry, KeyValueStore, KvIter};

/// Holds writes back until [`KeyValueStore::flush_cache`], so that ten updates of one key between
/// two commits reach the store below, its changelog and the downstream processors once.
///
/// Each dirty key is stored once, with the place of its last write in the write order and the
/// timestamp of the record that made it; a flush sorts the (at most a commit's worth of) dirty
/// entries by that place, so that they go down least recently written first, as Kafka Streams'
/// cache does.
pub struct CachingKeyValueStore<S> {
    inner: S,
    dirty: BTreeMap<Vec<u8>, DirtyEntry>,
    clock: u64,
    time: RecordTime,
    /// This store's dirty bytes, as its share of the instance's `statestore.cache.max.bytes`.
    charge: Charge,
}

/// A held-back write: the value (`None` deletes), when it was written (the cache's clock), and
/// the timestamp of the record that wrote it.
#[derive(Debug, Clone)]
struct DirtyEntry {
    value: Option<Vec<u8>>,
    written: u64,
    timestamp: i64,
}

impl<S: KeyValueStore> std::fmt::Debug for CachingKeyValueStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingKeyValueStore")
            .field("name", &self.inner.name())
            .field("dirty", &self.dirty.len())
            .finish()
    }
}

impl<S: KeyValueStore> CachingKeyValueStore<S> {
    /// Caches writes to `inner`; past `max_bytes` of dirty data the store asks for a commit.
    /// Each write remembers the current record's `time`, which is current again when the write
    /// goes down (so the changelog below is stamped with it) and comes back with the flush.
    pub fn new(inner: S, max_bytes: usize, time: RecordTime) -> Self {
        Self::with_budget(inner, &MemoryBudget::new(max_bytes), time)
    }

    /// Caches writes to `inner`, asking for a commit once the dirty data of every store that
    /// shares `budget` is over it.
    pub fn with_budget(inner: S, budget: &std::sync::Arc<MemoryBudget>, time: RecordTime) -> Self {
        Self {
            time,
            inner,
            dirty: BTreeMap::new(),
            clock: 0,
            charge: MemoryBudget::charge(budget),
        }
    }

    fn remember(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.clock += 1;
        let added = value.as_ref().map_or(0, Vec::len);
        let entry = DirtyEntry {
            value,
            written: self.clock,
            timestamp: self.time.get(),
        };
        // The key is copied only when it is new to the cache.
        match self.dirty.get_mut(key) {
            Some(old) => {
                self.charge.sub(old.value.as_ref().map_or(0, Vec::len));
                *old = entry;
            }
            None => {
                self.charge.add(key.len());
                self.dirty.insert(key.to_vec(), entry);
            }
        }
        self.charge.add(added);
    }

    fn forget(&mut self, key: &[u8]) {
        if let Some(old) = self.dirty.remove(key) {
            self.charge
                .sub(key.len() + old.value.map_or(0, |v| v.len()));
        }
    }
}

impl<S: KeyValueStore> KeyValueStore for CachingKeyValueStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.dirty.get(key) {
            Some(cached) => Ok(cached.value.clone()),
            None => self.inner.get(key),
        }
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.remember(key, Some(value.to_vec()));
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.get(key)?;
        self.remember(key, None);
        Ok(old)
    }
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>> {
        if bounds_inverted(from, to) {
            return Ok(Box::new(std::iter::empty()));
        }
        let cached = self
            .dirty
            .range::<[u8], _>((from, to))
            .map(|(k, v)| (k.clone(), v.value.clone()));
        let stored = self.inner.range(from, to)?;
        Ok(Box::new(OverlayIter::new(cached, stored)))
    }
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        if from < to {
            let doomed: Vec<Vec<u8>> = self
                .dirty
                .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .map(|(k, _)| k.clone())
                .collect();
            for key in doomed {
                self.forget(&key);
            }
        }
        self.inner.delete_range(from, to)
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        Ok(self.inner.approximate_num_entries()? + self.dirty.len() as u64)
    }
    fn flush(&mut self) -> Result<()> {
        self.flush_cache()?;
        Ok(())
    }
    fn flush_cache(&mut self) -> Result<Vec<FlushedEntry>> {
        let dirty = std::mem::take(&mut self.dirty);
        self.charge.set(0);
        let mut entries: Vec<(Vec<u8>, DirtyEntry)> = dirty.into_iter().collect();
        entries.sort_unstable_by_key(|(_, e)| e.written);
        let current = self.time.get();
        let mut flushed = Vec::with_capacity(entries.len());
        let written = (|| {
            for (key, entry) in entries {
                // The layers below (the changelog) see the write as made by its own record.
                self.time.set(entry.timestamp);
                match &entry.value {
                    Some(v) => self.inner.put(&key, v)?,
                    None => {
                        self.inner.delete(&key)?;
                    }
                }
                flushed.push((key, entry.value, entry.timestamp));
            }
            Ok::<_, crate::error::StateError>(())
        })();
        self.time.set(current);
        written?;
        self.inner.flush()?;
        Ok(flushed)
    }
    fn cache_full(&self) -> bool {
        self.charge.exceeded() || self.inner.cache_full()
    }
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.forget(key);
        self.inner.restore(key, value)
    }
    fn commit_into(&mut self, batch: &mut crate::batch::StateBatch) -> Result<()> {
        self.inner.commit_into(batch)
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
}
