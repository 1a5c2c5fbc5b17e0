//! Aggregation over Kafka Streams' sliding windows. Each record has a left window
//! `[t - d, t]` (`[0, d]` for records before `d`), and a right window `[t + 1, t + 1 + d]` once a
//! later record falls in it. A record updates every window that contains it; each window's value
//! is folded from the records it holds, kept in a second store.

use std::collections::BTreeSet;

use crate::dsl::windows::{EmitStrategy, SlidingWindows};
use crate::error::Result;
use crate::operators::aggregate::Folder;
use crate::operators::emit_progress::{self, EmitProgress};
use crate::processor::{Processor, ProcessorContext, WindowStoreHandle};
use crate::record::{Record, Windowed};

pub(crate) struct SlidingAggregate<K, V, VA> {
    pub store_name: String,
    pub records_store_name: String,
    pub windows: SlidingWindows,
    pub folder: Folder<K, V, VA>,
    pub emit: EmitStrategy,
    pub store: Option<WindowStoreHandle<K, VA>>,
    pub records: Option<WindowStoreHandle<K, V>>,
    pub observed: i64,
    pub emitted_until: i64,
    /// Emit-on-close: `observed` and `emitted_until`, kept in a logged store.
    pub progress: Option<EmitProgress>,
}

impl<K, V, VA> SlidingAggregate<K, V, VA> {
    pub fn new(
        store_name: String,
        records_store_name: String,
        windows: SlidingWindows,
        folder: Folder<K, V, VA>,
        emit: EmitStrategy,
    ) -> Self {
        Self {
            store_name,
            records_store_name,
            windows,
            folder,
            emit,
            store: None,
            records: None,
            observed: i64::MIN,
            emitted_until: i64::MIN,
            progress: None,
        }
    }
}

impl<K, V, VA> SlidingAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    /// Emits, once, every window that ends before the close time (`end < close`).
    fn emit_closed(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Option<VA>>,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let d = self.windows.time_difference_ms;
        let close = self.observed.saturating_sub(self.windows.grace_ms);
        if close <= self.emitted_until {
            return Ok(());
        }
        let from = self.emitted_until.saturating_sub(d);
        let mut closed = store.fetch_all(from, close.saturating_sub(d).saturating_sub(1))?;
        closed.sort_by_key(|(_, start, _)| *start);
        for (key, start, value) in closed {
            ctx.forward(Record::new(
                Windowed {
                    key,
                    start,
                    end: start + d,
                },
                Some(value),
                start + d,
            ))?;
        }
        self.emitted_until = close;
        if let Some(progress) = &mut self.progress {
            progress.observed(self.observed)?;
            progress.emitted(close)?;
        }
        Ok(())
    }
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Option<VA>> for SlidingAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Option<VA>>) -> Result<()> {
        self.store = Some(ctx.window_store(&self.store_name)?);
        let (progress, observed, emitted) =
            emit_progress::resume(ctx, &self.store_name, self.emit)?;
        self.progress = progress;
        self.observed = self.observed.max(observed);
        self.emitted_until = self.emitted_until.max(emitted);
        self.records = Some(ctx.window_store(&self.records_store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Option<VA>>,
    ) -> Result<()> {
        let (Some(store), Some(records)) = (self.store.clone(), self.records.clone()) else {
            return Ok(());
        };
        let t = record.timestamp;
        let d = self.windows.time_difference_ms;
        self.observed = self.observed.max(t);
        let close = self.observed.saturating_sub(self.windows.grace_ms);
        let left_start = (t - d).max(0);
        // A window [s, e] closes once stream time passes e + grace (`e < close`). This differs
        // from Kafka Streams 2.7–3.x, whose `end > close` test drops an in-order record's own
        // left window when grace is zero.
        if self.emit == EmitStrategy::OnWindowClose {
            // Before the records go in, so that a jump in stream time cannot expire a window
            // before it was emitted.
            self.emit_closed(ctx)?;
        }
        if t + d < close {
            // Every window that could hold this record has closed.
            ctx.record_dropped("late-record");
            return Ok(());
        }
        records.put(&record.key, t, Some(&record.value))?;
        let nearby = records.fetch_range(&record.key, t - d - 1, t + d)?;
        let mut starts = BTreeSet::new();
        starts.insert(left_start);
        for (other, _) in &nearby {
            let other = *other;
            if other < t && other >= t - d - 1 {
                // The right window of an earlier record now holds this one.
                starts.insert(other + 1);
            }
            if other >= t && other <= t + d {
                // The left window of a later (or equal) record holds this one.
                starts.insert((other - d).max(0));
            }
            if other > t {
                // This record's right window holds a later record.
                starts.insert(t + 1);
            }
        }
        for start in starts {
            let end = start + d;
            if end < close {
                ctx.record_dropped("late-record");
                continue;
            }
            let mut agg = None;
            for (_, value) in records.fetch_range(&record.key, start, end)? {
                agg = Some((self.folder)(&record.key, value, agg));
            }
            let Some(agg) = agg else { continue };
            store.put(&record.key, start, Some(&agg))?;
            if self.emit == EmitStrategy::OnWindowUpdate {
                let key = Windowed {
                    key: record.key.clone(),
                    start,
                    end,
                };
                ctx.forward(Record::new(key, Some(agg), t))?;
            }
        }
        Ok(())
    }

    fn flush(&mut self, _ctx: &mut ProcessorContext<'_, Windowed<K>, Option<VA>>) -> Result<()> {
        // Stream time reaches the progress store once per commit, not once per record.
        if let Some(progress) = &mut self.progress {
            progress.observed(self.observed)?;
        }
        // Every update was forwarded as it happened; the stores only need writing down.
        if let Some(store) = &self.store {
            store.flush_cache()?;
        }
        if let Some(records) = &self.records {
            records.flush_cache()?;
        }
        Ok(())
    }
}
