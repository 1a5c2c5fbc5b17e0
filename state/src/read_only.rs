//! A read-only view of a store, for queries from outside the task that owns it: reads go to
//! the store beneath, every write is an error.

use std::ops::Bound;

use crate::error::{Result, StateError};
use crate::store::{KeyValueStore, KvIter};

/// Wraps a store so that it can only be read.
///
/// ```
/// use eddy_state::{InMemoryKeyValueStore, KeyValueStore, ReadOnlyKeyValueStore};
/// let mut inner = InMemoryKeyValueStore::new("counts");
/// inner.put(b"a", b"1").unwrap();
/// let mut view = ReadOnlyKeyValueStore::new(Box::new(inner));
/// assert_eq!(view.get(b"a").unwrap(), Some(b"1".to_vec()));
/// assert!(view.put(b"a", b"2").is_err());
/// ```
pub struct ReadOnlyKeyValueStore {
    inner: Box<dyn KeyValueStore>,
}

impl ReadOnlyKeyValueStore {
    pub fn new(inner: Box<dyn KeyValueStore>) -> Self {
        Self { inner }
    }

    fn refuse<T>(&self) -> Result<T> {
        Err(StateError::ReadOnly(self.inner.name().to_string()))
    }
}

impl KeyValueStore for ReadOnlyKeyValueStore {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn put(&mut self, _key: &[u8], _value: &[u8]) -> Result<()> {
        self.refuse()
    }
    fn delete(&mut self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.refuse()
    }
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>> {
        self.inner.range(from, to)
    }
    fn delete_range(&mut self, _from: &[u8], _to: &[u8]) -> Result<()> {
        self.refuse()
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn restore(&mut self, _key: &[u8], _value: Option<&[u8]>) -> Result<()> {
        self.refuse()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
}
