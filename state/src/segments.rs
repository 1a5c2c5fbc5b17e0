//! Time segments over a key-value store: every window or session key starts with its segment id,
//! so a store is dropped a whole segment at a time and a time-bounded fetch visits only the
//! segments that exist.

use std::ops::Bound;

use crate::error::Result;
use crate::keys::{decode_timestamp, encode_timestamp};
use crate::store::KeyValueStore;

/// Segment bookkeeping shared by window and session stores.
#[derive(Debug, Clone)]
pub(crate) struct Segments {
    pub retention_ms: i64,
    pub interval_ms: i64,
    /// The largest timestamp written; retention counts back from it.
    pub observed_stream_time: i64,
    /// Segments below this id have been dropped.
    dropped_below: i64,
}

impl Segments {
    pub fn new(retention_ms: i64, interval_ms: Option<i64>) -> Self {
        // Kafka Streams' default: two live segments per retention period, at least a minute each.
        let interval_ms = interval_ms
            .unwrap_or_else(|| (retention_ms / 2).max(60_000))
            .max(1);
        Self {
            retention_ms,
            interval_ms,
            observed_stream_time: i64::MIN,
            dropped_below: i64::MIN,
        }
    }

    pub fn segment_id(&self, ts: i64) -> i64 {
        ts.div_euclid(self.interval_ms)
    }

    /// The earliest timestamp that is still within retention.
    pub fn earliest_live(&self) -> i64 {
        if self.observed_stream_time == i64::MIN {
            i64::MIN
        } else {
            self.observed_stream_time
                .saturating_sub(self.retention_ms)
                .saturating_add(1)
        }
    }

    /// Advances stream time to `ts` and drops every segment that fell out of retention.
    pub fn observe(&mut self, ts: i64, store: &mut dyn KeyValueStore) -> Result<()> {
        if ts <= self.observed_stream_time {
            return Ok(());
        }
        self.observed_stream_time = ts;
        // A segment is dropped once its last timestamp is out of retention.
        let first_live = self.segment_id(self.earliest_live());
        if first_live > self.dropped_below {
            store.delete_range(&[], &encode_timestamp(first_live))?;
            self.dropped_below = first_live;
        }
        Ok(())
    }

    /// The smallest segment id in `[from, to]` that holds data, if any.
    pub fn next_existing(store: &dyn KeyValueStore, from: i64, to: i64) -> Result<Option<i64>> {
        if from > to {
            return Ok(None);
        }
        let lo = encode_timestamp(from);
        let mut iter = store.range(Bound::Included(&lo), Bound::Unbounded)?;
        match iter.next() {
            Some(item) => {
                let (key, _) = item?;
                let mut head = [0u8; 8];
                if key.len() < 8 {
                    return Ok(None);
                }
                head.copy_from_slice(&key[..8]);
                let segment = decode_timestamp(head);
                Ok((segment <= to).then_some(segment))
            }
            None => Ok(None),
        }
    }
}
