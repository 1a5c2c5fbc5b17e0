//! Windowed stream–stream join (inner, left, outer), one processor per side. Each side keeps
//! its records in a window store and looks up the other side's. A record of an outer side that
//! finds no partner waits in an "unmatched" store and is emitted with `None` only once its join
//! window has closed, so a partner that arrives later within the window replaces it (no
//! spurious outer results, as in Kafka Streams since 3.1).

use std::sync::Arc;

use crate::error::{Result, SerdeError};
use crate::processor::{KeyValueStoreHandle, Processor, ProcessorContext, WindowStoreHandle};
use crate::record::Record;
use crate::serdes::Serde;

/// `(this side's value, the other side's value)` to the result; a side is `None` when unmatched.
pub(crate) type SideJoiner<K, VThis, VOther, VR> =
    Arc<dyn Fn(&K, Option<&VThis>, Option<&VOther>) -> VR + Send + Sync>;

/// Keys of the unmatched stores: time, then the input offset, in order-preserving bytes.
pub(crate) struct TimeSeqSerde;

impl Serde<(i64, i64)> for TimeSeqSerde {
    fn serialize(&self, value: &(i64, i64)) -> Result<Vec<u8>, SerdeError> {
        let mut out = eddy_state::encode_timestamp(value.0).to_vec();
        out.extend_from_slice(&eddy_state::encode_timestamp(value.1));
        Ok(out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<(i64, i64), SerdeError> {
        let bad = || SerdeError::Invalid {
            format: "join key",
            reason: format!("expected 16 bytes, got {}", bytes.len()),
        };
        if bytes.len() != 16 {
            return Err(bad());
        }
        let a = eddy_state::decode_timestamp(bytes[..8].try_into().map_err(|_| bad())?);
        let b = eddy_state::decode_timestamp(bytes[8..].try_into().map_err(|_| bad())?);
        Ok((a, b))
    }
}

pub(crate) type Unmatched<K, V> = KeyValueStoreHandle<(i64, i64), (K, V)>;

pub(crate) struct JoinSide<K, VThis, VOther, VR> {
    pub this_store_name: String,
    pub other_store_name: String,
    /// The unmatched store of this side, when this side is outer.
    pub this_unmatched_name: Option<String>,
    /// The unmatched store of the other side, when that side is outer.
    pub other_unmatched_name: Option<String>,
    /// A record of this side at `t` joins other records in `[t - before, t + after]`.
    pub before_ms: i64,
    pub after_ms: i64,
    pub grace_ms: i64,
    pub joiner: SideJoiner<K, VThis, VOther, VR>,
    pub this_store: Option<WindowStoreHandle<K, VThis>>,
    pub other_store: Option<WindowStoreHandle<K, VOther>>,
    pub this_unmatched: Option<Unmatched<K, VThis>>,
    pub other_unmatched: Option<Unmatched<K, VOther>>,
    pub seq: i64,
}

impl<K, VThis, VOther, VR> JoinSide<K, VThis, VOther, VR>
where
    K: Clone + PartialEq + Send + 'static,
    VThis: Clone + Send + 'static,
    VOther: Clone + Send + 'static,
    VR: Clone + Send + 'static,
{
    /// Emits the unmatched records of both sides whose windows have closed, oldest first.
    fn emit_expired(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        let now = ctx.stream_time();
        let mut out: Vec<(i64, K, VR)> = Vec::new();
        if let Some(store) = &self.this_unmatched {
            for ((ts, seq), (key, value)) in store.all()? {
                if ts
                    .saturating_add(self.after_ms)
                    .saturating_add(self.grace_ms)
                    >= now
                {
                    break;
                }
                out.push((ts, key.clone(), (self.joiner)(&key, Some(&value), None)));
                store.delete(&(ts, seq))?;
            }
        }
        if let Some(store) = &self.other_unmatched {
            for ((ts, seq), (key, value)) in store.all()? {
                if ts
                    .saturating_add(self.before_ms)
                    .saturating_add(self.grace_ms)
                    >= now
                {
                    break;
                }
                out.push((ts, key.clone(), (self.joiner)(&key, None, Some(&value))));
                store.delete(&(ts, seq))?;
            }
        }
        out.sort_by_key(|(ts, _, _)| *ts);
        for (ts, key, value) in out {
            ctx.forward(Record::new(key, value, ts))?;
        }
        Ok(())
    }
}

impl<K, VThis, VOther, VR> Processor<K, VThis, K, VR> for JoinSide<K, VThis, VOther, VR>
where
    K: Clone + PartialEq + Send + 'static,
    VThis: Clone + Send + 'static,
    VOther: Clone + Send + 'static,
    VR: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        self.this_store = Some(ctx.window_store(&self.this_store_name)?);
        self.other_store = Some(ctx.window_store(&self.other_store_name)?);
        if let Some(name) = &self.this_unmatched_name {
            self.this_unmatched = Some(ctx.key_value_store(name)?);
        }
        if let Some(name) = &self.other_unmatched_name {
            self.other_unmatched = Some(ctx.key_value_store(name)?);
        }
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, VThis>,
        ctx: &mut ProcessorContext<'_, K, VR>,
    ) -> Result<()> {
        let (Some(this_store), Some(other_store)) =
            (self.this_store.clone(), self.other_store.clone())
        else {
            return Ok(());
        };
        let t = record.timestamp;
        if t.saturating_add(self.after_ms)
            .saturating_add(self.grace_ms)
            < ctx.stream_time()
        {
            ctx.record_dropped("late-record");
            return Ok(());
        }
        this_store.put(&record.key, t, Some(&record.value))?;
        let partners =
            other_store.fetch_range(&record.key, t - self.before_ms, t + self.after_ms)?;
        for (other_ts, other_value) in &partners {
            let joined = (self.joiner)(&record.key, Some(&record.value), Some(other_value));
            ctx.forward(Record {
                key: record.key.clone(),
                value: joined,
                timestamp: t.max(*other_ts),
                headers: record.headers.clone(),
            })?;
            // A waiting outer record of the other side has found its partner.
            if let Some(unmatched) = &self.other_unmatched {
                for ((ts, seq), (key, _)) in
                    unmatched.range(&(*other_ts, i64::MIN), &(*other_ts, i64::MAX))?
                {
                    if key == record.key {
                        unmatched.delete(&(ts, seq))?;
                    }
                }
            }
        }
        if partners.is_empty() {
            if let Some(unmatched) = &self.this_unmatched {
                self.seq += 1;
                let seq = ctx.record_metadata().map_or(self.seq, |m| m.offset);
                unmatched.put(&(t, seq), &(record.key.clone(), record.value.clone()))?;
            }
        }
        self.emit_expired(ctx)
    }

    fn flush(&mut self, _ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        for store in [&self.this_unmatched].into_iter().flatten() {
            store.flush_cache()?;
        }
        if let Some(s) = &self.this_store {
            s.flush_cache()?;
        }
        Ok(())
    }
}
