//! The byte-level store traits that every implementation and decorator shares.

use std::ops::Bound;

use crate::batch::StateBatch;
use crate::error::Result;

/// One key and its value, as bytes.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// An ordered iterator over a store's entries.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KeyValue>> + 'a>;

/// A change that a caching store held back and has now written down: key, value (`None` is a
/// delete) and the timestamp of the record that last wrote it.
pub type FlushedEntry = (Vec<u8>, Option<Vec<u8>>, i64);

/// A key-value store of bytes, ordered by the bytes of its keys.
///
/// Window and session stores are encodings over this trait (see [`crate::WindowStore`]), so that
/// every decorator (metering, caching, change-logging) is written once.
pub trait KeyValueStore: Send {
    /// The store's name, unique within a task.
    fn name(&self) -> &str;
    /// The value of `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Removes `key`, returning its old value.
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Entries with keys within the bounds, in key order.
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>>;
    /// Removes every key in `[from, to)` at once. Used to drop whole time segments; it is not
    /// written to a changelog (the changelog topic expires those records by its own retention).
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()>;
    /// An estimate of the number of entries (exact for in-memory stores).
    fn approximate_num_entries(&self) -> Result<u64>;
    /// Makes everything written so far durable in the layer below.
    fn flush(&mut self) -> Result<()>;
    /// For a caching layer: writes the held-back changes down and returns them, one per key, so
    /// that their owner can forward them. Other layers pass the call down.
    fn flush_cache(&mut self) -> Result<Vec<FlushedEntry>> {
        self.flush()?;
        Ok(Vec::new())
    }
    /// For a caching layer: whether the write-back buffer is over its size and wants a commit.
    fn cache_full(&self) -> bool {
        false
    }
    /// Writes a changelog record back during restore: no caching, no logging.
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        match value {
            Some(v) => self.put(key, v),
            None => self.delete(key).map(|_| ()),
        }
    }
    /// For a transaction-buffer layer: hands the writes since the last commit on, once their
    /// transaction has committed — into `batch` when the store below is persistent (so that they
    /// land atomically with the task's checkpoint), else straight into the store below. Every
    /// decorator must pass the call down.
    fn commit_into(&mut self, _batch: &mut StateBatch) -> Result<()> {
        Ok(())
    }
    /// Whether the data survives a restart of the process.
    fn persistent(&self) -> bool;

    /// Entries whose keys start with `prefix`, in key order.
    fn prefix_scan<'a>(&'a self, prefix: &[u8]) -> Result<KvIter<'a>> {
        match prefix_successor(prefix) {
            Some(end) => {
                let end: Vec<u8> = end;
                let iter = self.range(Bound::Included(prefix), Bound::Excluded(end.as_slice()))?;
                Ok(iter)
            }
            None => self.range(Bound::Included(prefix), Bound::Unbounded),
        }
    }
    /// Every entry, in key order.
    fn all<'a>(&'a self) -> Result<KvIter<'a>> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, if one exists.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Whether `key` lies within the bounds.
pub(crate) fn in_bounds(key: &[u8], from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    let above = match from {
        Bound::Included(f) => key >= f,
        Bound::Excluded(f) => key > f,
        Bound::Unbounded => true,
    };
    let below = match to {
        Bound::Included(t) => key <= t,
        Bound::Excluded(t) => key < t,
        Bound::Unbounded => true,
    };
    above && below
}

/// Whether the lower bound lies above the upper one (an empty range that RocksDB and `BTreeMap`
/// would reject or panic on).
pub(crate) fn bounds_inverted(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    matches!(
        (from, to),
        (Bound::Included(f) | Bound::Excluded(f), Bound::Included(t) | Bound::Excluded(t)) if f > t
    )
}

/// Owned copies of borrowed bounds, for stores that keep them in an iterator.
pub(crate) fn owned_bound(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl KeyValueStore for Box<dyn KeyValueStore> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        (**self).put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).delete(key)
    }
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>> {
        (**self).range(from, to)
    }
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        (**self).delete_range(from, to)
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        (**self).approximate_num_entries()
    }
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
    fn flush_cache(&mut self) -> Result<Vec<FlushedEntry>> {
        (**self).flush_cache()
    }
    fn cache_full(&self) -> bool {
        (**self).cache_full()
    }
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        (**self).restore(key, value)
    }
    fn commit_into(&mut self, batch: &mut StateBatch) -> Result<()> {
        (**self).commit_into(batch)
    }
    fn persistent(&self) -> bool {
        (**self).persistent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_carries_over_max_bytes() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_successor(&[255, 255]), None);
    }
}
