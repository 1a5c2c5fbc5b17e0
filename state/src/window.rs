//! The window store: values per key and window start, kept for a retention period and dropped a
//! whole time segment at a time.

use std::ops::Bound;

use crate::error::Result;
use crate::keys::{
    decode_ordered, encode_ordered, encode_timestamp, segment_key_prefix, segment_time_prefix,
    KeyOrder,
};
use crate::segments::Segments;
use crate::store::{prefix_successor, KeyValueStore};

/// One window's entry: its key, window start and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowEntry {
    pub key: Vec<u8>,
    pub start: i64,
    /// Distinguishes duplicates of one key and start when the store retains duplicates (joins).
    pub seq: i64,
    pub value: Vec<u8>,
}

/// Values per (key, window start) over any [`KeyValueStore`], so that the store's decorators
/// (metering, caching, change-logging) apply unchanged. Keys are
/// `[segment][key length][key][window start][sequence]`, or in a time-ordered store (for
/// emit-on-close, see [`KeyOrder`]) `[segment][window start][key length][key][sequence]`, so that
/// [`WindowStore::fetch_all`] reads exactly the windows in its range.
///
/// ```
/// use eddy_state::{InMemoryKeyValueStore, WindowStore};
/// let mut store = WindowStore::new(Box::new(InMemoryKeyValueStore::new("counts")), 3_600_000, None, false);
/// store.put(b"alice", 60_000, Some(b"3")).unwrap();
/// assert_eq!(store.fetch(b"alice", 60_000).unwrap(), Some(b"3".to_vec()));
/// assert_eq!(store.fetch_range(b"alice", 0, 120_000).unwrap().len(), 1);
/// ```
pub struct WindowStore {
    inner: Box<dyn KeyValueStore>,
    segments: Segments,
    retain_duplicates: bool,
    seq: i64,
    order: KeyOrder,
}

impl std::fmt::Debug for WindowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStore")
            .field("name", &self.inner.name())
            .field("segments", &self.segments)
            .finish()
    }
}

impl WindowStore {
    /// A window store over `inner`, keeping windows that start within `retention_ms` of the
    /// largest start seen. `retain_duplicates` keeps every put (for stream–stream joins).
    pub fn new(
        inner: Box<dyn KeyValueStore>,
        retention_ms: i64,
        segment_interval_ms: Option<i64>,
        retain_duplicates: bool,
    ) -> Self {
        Self {
            inner,
            segments: Segments::new(retention_ms, segment_interval_ms),
            retain_duplicates,
            seq: 0,
            order: KeyOrder::KeyFirst,
        }
    }

    /// The same store with its entries in `order` within each segment.
    pub fn with_order(mut self, order: KeyOrder) -> Self {
        self.order = order;
        self
    }

    /// The order of the store's entries.
    pub fn order(&self) -> KeyOrder {
        self.order
    }

    fn encode(&self, key: &[u8], start: i64, seq: i64) -> Vec<u8> {
        encode_ordered(self.order, self.segments.segment_id(start), key, start, seq)
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The store below the window encoding, for flushing and restoring raw changelog records.
    pub fn inner_mut(&mut self) -> &mut dyn KeyValueStore {
        self.inner.as_mut()
    }

    /// The store below the window encoding.
    pub fn inner(&self) -> &dyn KeyValueStore {
        self.inner.as_ref()
    }

    /// The largest window start written so far.
    pub fn observed_stream_time(&self) -> i64 {
        self.segments.observed_stream_time
    }

    /// Writes (or with `None`, deletes) the value of `key` in the window starting at `start`.
    /// Returns `false`, writing nothing, when the window is already out of retention.
    pub fn put(&mut self, key: &[u8], start: i64, value: Option<&[u8]>) -> Result<bool> {
        self.segments.observe(start, self.inner.as_mut())?;
        if start < self.segments.earliest_live() {
            return Ok(false);
        }
        let seq = if self.retain_duplicates {
            if value.is_none() {
                return Ok(true);
            }
            self.seq += 1;
            self.seq
        } else {
            0
        };
        let raw = self.encode(key, start, seq);
        match value {
            Some(v) => self.inner.put(&raw, v)?,
            None => {
                self.inner.delete(&raw)?;
            }
        }
        Ok(true)
    }

    /// The value of `key` in the window starting at `start`.
    pub fn fetch(&self, key: &[u8], start: i64) -> Result<Option<Vec<u8>>> {
        if start < self.segments.earliest_live() {
            return Ok(None);
        }
        self.inner.get(&self.encode(key, start, 0))
    }

    /// `(start, value)` of every window of `key` starting in `[from, to]`, oldest first.
    pub fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<Vec<(i64, Vec<u8>)>> {
        if self.order == KeyOrder::TimeFirst {
            // Every key's windows in the range are read; a time-ordered store is read by key
            // only by queries, never on the per-record path.
            return Ok(self
                .fetch_all(from, to)?
                .into_iter()
                .filter(|e| e.key == key)
                .map(|e| (e.start, e.value))
                .collect());
        }
        let from = from.max(self.segments.earliest_live());
        let mut out = Vec::new();
        let (lo_seg, hi_seg) = (self.segments.segment_id(from), self.segments.segment_id(to));
        let mut next = Segments::next_existing(self.inner.as_ref(), lo_seg, hi_seg)?;
        while let Some(segment) = next {
            let prefix = segment_key_prefix(segment, key);
            let mut lo = prefix.clone();
            lo.extend_from_slice(&encode_timestamp(from));
            let mut hi = prefix;
            hi.extend_from_slice(&encode_timestamp(to));
            hi.extend_from_slice(&encode_timestamp(i64::MAX));
            for item in self
                .inner
                .range(Bound::Included(&lo), Bound::Included(&hi))?
            {
                let (raw, value) = item?;
                let parsed = decode_ordered(self.order, self.inner.name(), &raw)?;
                out.push((parsed.a, value));
            }
            next = match segment.checked_add(1) {
                Some(s) => Segments::next_existing(self.inner.as_ref(), s, hi_seg)?,
                None => None,
            };
        }
        Ok(out)
    }

    /// Every entry of every key with a window starting in `[from, to]`: by segment, then by key
    /// (key order) or by window start (time order).
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<WindowEntry>> {
        let mut out = Vec::new();
        self.visit(from, to, &mut |entry| {
            out.push(entry);
            true
        })?;
        Ok(out)
    }

    /// Hands each entry [`WindowStore::fetch_all`] would return to `visit`, in the same order,
    /// until `visit` answers `false`: a reader that stops early holds no more than it keeps.
    pub fn visit(
        &self,
        from: i64,
        to: i64,
        visit: &mut dyn FnMut(WindowEntry) -> bool,
    ) -> Result<()> {
        let from = from.max(self.segments.earliest_live());
        let (lo_seg, hi_seg) = (self.segments.segment_id(from), self.segments.segment_id(to));
        let mut next = Segments::next_existing(self.inner.as_ref(), lo_seg, hi_seg)?;
        while let Some(segment) = next {
            // Key order: the whole segment, filtered. Time order: the windows in range only.
            let (lower, end) = match self.order {
                KeyOrder::KeyFirst => {
                    let prefix = encode_timestamp(segment);
                    (prefix.to_vec(), prefix_successor(&prefix))
                }
                KeyOrder::TimeFirst => (
                    segment_time_prefix(segment, from).to_vec(),
                    prefix_successor(&segment_time_prefix(segment, to)),
                ),
            };
            let upper = match &end {
                Some(e) => Bound::Excluded(e.as_slice()),
                None => Bound::Unbounded,
            };
            for item in self.inner.range(Bound::Included(&lower), upper)? {
                let (raw, value) = item?;
                let parsed = decode_ordered(self.order, self.inner.name(), &raw)?;
                if parsed.a >= from
                    && parsed.a <= to
                    && !visit(WindowEntry {
                        key: parsed.key,
                        start: parsed.a,
                        seq: parsed.b,
                        value,
                    })
                {
                    return Ok(());
                }
            }
            next = match segment.checked_add(1) {
                Some(s) => Segments::next_existing(self.inner.as_ref(), s, hi_seg)?,
                None => None,
            };
        }
        Ok(())
    }

    /// Every live entry.
    pub fn all(&self) -> Result<Vec<WindowEntry>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }

    /// Decodes a raw key of this store's layout (from a cache flush or a changelog record).
    pub fn decode_key(&self, raw: &[u8]) -> Result<(Vec<u8>, i64)> {
        let parsed = decode_ordered(self.order, self.inner.name(), raw)?;
        Ok((parsed.key, parsed.a))
    }

    /// Writes a raw changelog record back, as a restore does.
    pub fn restore_raw(&mut self, raw: &[u8], value: Option<&[u8]>) -> Result<()> {
        let parsed = decode_ordered(self.order, self.inner.name(), raw)?;
        self.segments.observe(parsed.a, self.inner.as_mut())?;
        if parsed.a < self.segments.earliest_live() {
            return Ok(());
        }
        self.seq = self.seq.max(parsed.b);
        self.inner.restore(raw, value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::memory::InMemoryKeyValueStore;
    use crate::store::KvIter;

    /// Counts the entries that range reads hand out.
    struct Counting {
        inner: InMemoryKeyValueStore,
        read: Arc<AtomicUsize>,
    }

    impl KeyValueStore for Counting {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.delete(key)
        }
        fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>> {
            let read = Arc::clone(&self.read);
            Ok(Box::new(self.inner.range(from, to)?.inspect(move |_| {
                read.fetch_add(1, Ordering::Relaxed);
            })))
        }
        fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
            self.inner.delete_range(from, to)
        }
        fn approximate_num_entries(&self) -> Result<u64> {
            self.inner.approximate_num_entries()
        }
        fn flush(&mut self) -> Result<()> {
            Ok(())
        }
        fn persistent(&self) -> bool {
            false
        }
    }

    /// 100 windows of 1 000 keys in one segment; returns the store and its read counter.
    fn filled(order: KeyOrder) -> (WindowStore, Arc<AtomicUsize>) {
        let read = Arc::new(AtomicUsize::new(0));
        let inner = Counting {
            inner: InMemoryKeyValueStore::new("w"),
            read: Arc::clone(&read),
        };
        let mut store =
            WindowStore::new(Box::new(inner), 1_000_000, Some(1_000_000), false).with_order(order);
        for start in (0..100_000).step_by(1_000) {
            for key in 0..1_000 {
                let key = format!("key-{key}");
                store.put(key.as_bytes(), start, Some(b"1")).unwrap();
            }
        }
        (store, read)
    }

    #[test]
    fn a_time_ordered_store_reads_only_the_windows_in_range() {
        let (store, read) = filled(KeyOrder::TimeFirst);
        read.store(0, Ordering::Relaxed);
        let closing = store.fetch_all(50_000, 50_999).unwrap();
        assert_eq!(closing.len(), 1_000);
        assert!(closing.iter().all(|e| e.start == 50_000));
        // One probe for the segment, one read past the range's end at most, and the 1 000 entries.
        assert!(
            read.load(Ordering::Relaxed) <= 1_002,
            "read {} entries",
            read.load(Ordering::Relaxed)
        );
        // Key order has to read the whole segment for the same answer.
        let (keyed, keyed_read) = filled(KeyOrder::KeyFirst);
        keyed_read.store(0, Ordering::Relaxed);
        assert_eq!(keyed.fetch_all(50_000, 50_999).unwrap().len(), 1_000);
        assert!(keyed_read.load(Ordering::Relaxed) >= 100_000);
    }

    #[test]
    fn a_time_ordered_store_answers_like_a_key_ordered_one() {
        let (time, _) = filled(KeyOrder::TimeFirst);
        let (keyed, _) = filled(KeyOrder::KeyFirst);
        assert_eq!(time.fetch(b"key-7", 3_000).unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            time.fetch_range(b"key-7", 2_000, 5_000).unwrap(),
            keyed.fetch_range(b"key-7", 2_000, 5_000).unwrap()
        );
        let mut by_time = time.fetch_all(10_000, 12_000).unwrap();
        let mut by_key = keyed.fetch_all(10_000, 12_000).unwrap();
        assert!(by_time.windows(2).all(|w| w[0].start <= w[1].start));
        by_time.sort_by(|a, b| (&a.key, a.start).cmp(&(&b.key, b.start)));
        by_key.sort_by(|a, b| (&a.key, a.start).cmp(&(&b.key, b.start)));
        assert_eq!(by_time, by_key);
        // A raw key of the time-ordered layout restores into a time-ordered store.
        let raw = time.encode(b"key-7", 3_000, 0);
        assert_eq!(time.decode_key(&raw).unwrap(), (b"key-7".to_vec(), 3_000));
        let mut restored = WindowStore::new(
            Box::new(InMemoryKeyValueStore::new("r")),
            1_000_000,
            Some(1_000_000),
            false,
        )
        .with_order(KeyOrder::TimeFirst);
        restored.restore_raw(&raw, Some(b"9")).unwrap();
        assert_eq!(
            restored.fetch(b"key-7", 3_000).unwrap(),
            Some(b"9".to_vec())
        );
    }
}
