//! The session store: sessions per key, as (start, end) ranges of activity, found by overlap and
//! merged by the session-window aggregation.

use std::ops::Bound;

use crate::error::Result;
use crate::keys::{decode_segmented, encode_segmented, encode_timestamp, segment_key_prefix};
use crate::segments::Segments;
use crate::store::{prefix_successor, KeyValueStore};

/// One session of a key: activity from `start` to `end`, both inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub key: Vec<u8>,
    pub start: i64,
    pub end: i64,
    pub value: Vec<u8>,
}

/// Sessions per key over any [`KeyValueStore`]. Keys are
/// `[segment of end][key length][key][end][start]`, so that a search by earliest end is one seek.
///
/// ```
/// use eddy_state::{InMemoryKeyValueStore, SessionStore};
/// let mut store = SessionStore::new(Box::new(InMemoryKeyValueStore::new("sessions")), 86_400_000, None);
/// store.put(b"alice", 1_000, 5_000, b"2").unwrap();
/// // sessions of alice ending at or after 4s and starting at or before 10s
/// let found = store.find_sessions(b"alice", 4_000, 10_000).unwrap();
/// assert_eq!(found[0].start, 1_000);
/// ```
pub struct SessionStore {
    inner: Box<dyn KeyValueStore>,
    segments: Segments,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("name", &self.inner.name())
            .finish()
    }
}

impl SessionStore {
    /// A session store over `inner` that keeps sessions ending within `retention_ms` of the latest
    /// session end seen.
    pub fn new(
        inner: Box<dyn KeyValueStore>,
        retention_ms: i64,
        segment_interval_ms: Option<i64>,
    ) -> Self {
        Self {
            inner,
            segments: Segments::new(retention_ms, segment_interval_ms),
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The store below the session encoding.
    pub fn inner_mut(&mut self) -> &mut dyn KeyValueStore {
        self.inner.as_mut()
    }

    /// The store below the session encoding.
    pub fn inner(&self) -> &dyn KeyValueStore {
        self.inner.as_ref()
    }

    /// Writes the session `[start, end]` of `key`. Returns `false` when it is out of retention.
    pub fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<bool> {
        self.segments.observe(end, self.inner.as_mut())?;
        if end < self.segments.earliest_live() {
            return Ok(false);
        }
        let raw = encode_segmented(self.segments.segment_id(end), key, end, start);
        self.inner.put(&raw, value)?;
        Ok(true)
    }

    /// Removes the session `[start, end]` of `key`.
    pub fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<()> {
        let raw = encode_segmented(self.segments.segment_id(end), key, end, start);
        self.inner.delete(&raw)?;
        Ok(())
    }

    /// The value of exactly the session `[start, end]` of `key`.
    pub fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        let raw = encode_segmented(self.segments.segment_id(end), key, end, start);
        self.inner.get(&raw)
    }

    /// Sessions of `key` that end at or after `earliest_end` and start at or before
    /// `latest_start`: the sessions that a record at `t` with gap `g` merges with are
    /// `find_sessions(key, t - g, t + g)`.
    pub fn find_sessions(
        &self,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<SessionEntry>> {
        let earliest_end = earliest_end.max(self.segments.earliest_live());
        let mut out = Vec::new();
        let lo_seg = self.segments.segment_id(earliest_end);
        let mut next = Segments::next_existing(self.inner.as_ref(), lo_seg, i64::MAX)?;
        while let Some(segment) = next {
            let prefix = segment_key_prefix(segment, key);
            let mut lo = prefix.clone();
            lo.extend_from_slice(&encode_timestamp(earliest_end));
            let hi = prefix_successor(&prefix);
            let upper = match &hi {
                Some(h) => Bound::Excluded(h.as_slice()),
                None => Bound::Unbounded,
            };
            for item in self.inner.range(Bound::Included(&lo), upper)? {
                let (raw, value) = item?;
                let parsed = decode_segmented(self.inner.name(), &raw)?;
                if parsed.b <= latest_start {
                    out.push(SessionEntry {
                        key: parsed.key,
                        start: parsed.b,
                        end: parsed.a,
                        value,
                    });
                }
            }
            next = match segment.checked_add(1) {
                Some(s) => Segments::next_existing(self.inner.as_ref(), s, i64::MAX)?,
                None => None,
            };
        }
        out.sort_by_key(|s| (s.start, s.end));
        Ok(out)
    }

    /// Every live session of `key`, oldest first.
    pub fn fetch(&self, key: &[u8]) -> Result<Vec<SessionEntry>> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }

    /// Every live session of every key.
    pub fn all(&self) -> Result<Vec<SessionEntry>> {
        let mut out = Vec::new();
        self.visit(&mut |session| {
            out.push(session);
            true
        })?;
        Ok(out)
    }

    /// Hands each session [`SessionStore::all`] would return to `visit`, in the same order,
    /// until `visit` answers `false`: a reader that stops early holds no more than it keeps.
    pub fn visit(&self, visit: &mut dyn FnMut(SessionEntry) -> bool) -> Result<()> {
        for item in self.inner.all()? {
            let (raw, value) = item?;
            let parsed = decode_segmented(self.inner.name(), &raw)?;
            if parsed.a >= self.segments.earliest_live()
                && !visit(SessionEntry {
                    key: parsed.key,
                    start: parsed.b,
                    end: parsed.a,
                    value,
                })
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Writes a raw changelog record back, as a restore does: a session that is out of retention
    /// by then is dropped.
    pub fn restore_raw(&mut self, raw: &[u8], value: Option<&[u8]>) -> Result<()> {
        let parsed = decode_segmented(self.inner.name(), raw)?;
        self.segments.observe(parsed.a, self.inner.as_mut())?;
        if parsed.a < self.segments.earliest_live() {
            return Ok(());
        }
        self.inner.restore(raw, value)
    }

    /// Decodes a raw key of this store's layout into (key, start, end).
    pub fn decode_key(&self, raw: &[u8]) -> Result<(Vec<u8>, i64, i64)> {
        let parsed = decode_segmented(self.inner.name(), raw)?;
        Ok((parsed.key, parsed.b, parsed.a))
    }
}
