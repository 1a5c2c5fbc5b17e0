//! The change-logging decorator: hands every change that reaches it to a changelog sink.

use std::ops::Bound;
use std::sync::Arc;

use crate::error::Result;
use crate::record_time::RecordTime;
use crate::store::{KeyValueStore, KvIter};

/// Where a store's changes go: the runtime sends them to the store's changelog topic in the
/// task's transaction; the test driver keeps them so that tests can replay them.
pub trait ChangelogSink: Send + Sync {
    /// Records that `key` of `store` now has `value` (`None`: deleted), written by a record
    /// with `timestamp`.
    fn log(&self, store: &str, key: &[u8], value: Option<&[u8]>, timestamp: i64);
}

/// Logs each put and delete after applying it to the store below. Above it, a caching layer
/// collapses updates so that the changelog gets one record per key and commit.
pub struct ChangeLoggingKeyValueStore<S> {
    inner: S,
    sink: Arc<dyn ChangelogSink>,
    time: RecordTime,
}

impl<S: KeyValueStore> std::fmt::Debug for ChangeLoggingKeyValueStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeLoggingKeyValueStore")
            .field("name", &self.inner.name())
            .finish()
    }
}

impl<S: KeyValueStore> ChangeLoggingKeyValueStore<S> {
    /// Logs the changes of `inner` to `sink`, stamped with the current record's `time`.
    pub fn new(inner: S, sink: Arc<dyn ChangelogSink>, time: RecordTime) -> Self {
        Self { inner, sink, time }
    }
}

impl<S: KeyValueStore> KeyValueStore for ChangeLoggingKeyValueStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(key, value)?;
        self.sink
            .log(self.inner.name(), key, Some(value), self.time.get());
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.inner.delete(key)?;
        self.sink.log(self.inner.name(), key, None, self.time.get());
        Ok(old)
    }
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>> {
        self.inner.range(from, to)
    }
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        self.inner.delete_range(from, to)
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn cache_full(&self) -> bool {
        self.inner.cache_full()
    }
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        // Restoring replays the changelog: it must not write it again.
        self.inner.restore(key, value)
    }
    fn commit_into(&mut self, batch: &mut crate::batch::StateBatch) -> Result<()> {
        self.inner.commit_into(batch)
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
}
