//! An in-memory key-value store on a `BTreeMap`, for tests and for stores that need no durability.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::Result;
use crate::store::{bounds_inverted, KeyValueStore, KvIter};

/// A `BTreeMap`-backed [`KeyValueStore`]. Its changelog, when it has one, is its only durability.
#[derive(Debug, Default)]
pub struct InMemoryKeyValueStore {
    name: String,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl InMemoryKeyValueStore {
    /// An empty store called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            map: BTreeMap::new(),
        }
    }
}

impl KeyValueStore for InMemoryKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.remove(key))
    }
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>> {
        // BTreeMap::range panics on inverted bounds; an inverted range is simply empty.
        if bounds_inverted(from, to) {
            return Ok(Box::new(std::iter::empty()));
        }
        let iter = self
            .map
            .range::<[u8], _>((from, to))
            .map(|(k, v)| Ok((k.clone(), v.clone())));
        Ok(Box::new(iter))
    }
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let mut tail = self.map.split_off(from);
        let mut rest = tail.split_off(to);
        self.map.append(&mut rest);
        Ok(())
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        Ok(self.map.len() as u64)
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn persistent(&self) -> bool {
        false
    }
}
