//! The window store: values per key and window start, kept for a retention period and dropped a
//! whole time segment at a time.

use std::ops::Bound;

use crate::error::Result;
use crate::keys::{decode_segmented, encode_segmented, encode_timestamp, segment_key_prefix};
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
/// `[segment][key length][key][window start][sequence]`.
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
        }
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
        let raw = encode_segmented(self.segments.segment_id(start), key, start, seq);
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
        let raw = encode_segmented(self.segments.segment_id(start), key, start, 0);
        self.inner.get(&raw)
    }

    /// `(start, value)` of every window of `key` starting in `[from, to]`, oldest first.
    pub fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<Vec<(i64, Vec<u8>)>> {
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
                let parsed = decode_segmented(self.inner.name(), &raw)?;
                out.push((parsed.a, value));
            }
            next = match segment.checked_add(1) {
                Some(s) => Segments::next_existing(self.inner.as_ref(), s, hi_seg)?,
                None => None,
            };
        }
        Ok(out)
    }

    /// Every entry of every key with a window starting in `[from, to]`, by segment then key.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<WindowEntry>> {
        let from = from.max(self.segments.earliest_live());
        let mut out = Vec::new();
        let (lo_seg, hi_seg) = (self.segments.segment_id(from), self.segments.segment_id(to));
        let mut next = Segments::next_existing(self.inner.as_ref(), lo_seg, hi_seg)?;
        while let Some(segment) = next {
            let prefix = encode_timestamp(segment);
            let end = prefix_successor(&prefix);
            let upper = match &end {
                Some(e) => Bound::Excluded(e.as_slice()),
                None => Bound::Unbounded,
            };
            for item in self.inner.range(Bound::Included(&prefix), upper)? {
                let (raw, value) = item?;
                let parsed = decode_segmented(self.inner.name(), &raw)?;
                if parsed.a >= from && parsed.a <= to {
                    out.push(WindowEntry {
                        key: parsed.key,
                        start: parsed.a,
                        seq: parsed.b,
                        value,
                    });
                }
            }
            next = match segment.checked_add(1) {
                Some(s) => Segments::next_existing(self.inner.as_ref(), s, hi_seg)?,
                None => None,
            };
        }
        Ok(out)
    }

    /// Every live entry.
    pub fn all(&self) -> Result<Vec<WindowEntry>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }

    /// Decodes a raw key of this store's layout (from a cache flush or a changelog record).
    pub fn decode_key(&self, raw: &[u8]) -> Result<(Vec<u8>, i64)> {
        let parsed = decode_segmented(self.inner.name(), raw)?;
        Ok((parsed.key, parsed.a))
    }

    /// Writes a raw changelog record back, as a restore does.
    pub fn restore_raw(&mut self, raw: &[u8], value: Option<&[u8]>) -> Result<()> {
        let parsed = decode_segmented(self.inner.name(), raw)?;
        self.segments.observe(parsed.a, self.inner.as_mut())?;
        if parsed.a < self.segments.earliest_live() {
            return Ok(());
        }
        self.seq = self.seq.max(parsed.b);
        self.inner.restore(raw, value)
    }
}
