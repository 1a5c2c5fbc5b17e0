//! Aggregation over tumbling and hopping time windows, with grace and either emit strategy.

use crate::dsl::windows::{EmitStrategy, TimeWindows};
use crate::error::Result;
use crate::operators::aggregate::Folder;
use crate::operators::emit_progress::{self, EmitProgress};
use crate::processor::{Processor, ProcessorContext, WindowStoreHandle};
use crate::record::{Record, Windowed};

pub(crate) struct WindowAggregate<K, V, VA> {
    pub store_name: String,
    pub windows: TimeWindows,
    pub folder: Folder<K, V, VA>,
    pub emit: EmitStrategy,
    pub caching: bool,
    pub store: Option<WindowStoreHandle<K, VA>>,
    /// The largest record time this processor has seen; windows close relative to it.
    pub observed: i64,
    /// Windows ending at or before this time have been emitted (emit-on-close).
    pub emitted_until: i64,
    /// Emit-on-close: `observed` and `emitted_until`, kept in a logged store.
    pub progress: Option<EmitProgress>,
    /// Emit-on-close only: after this much wall-clock time without a record, stream time moves
    /// on by the idle time, so the last windows of a quiet input close.
    pub idle_close_ms: Option<i64>,
    /// Wall-clock time of the last record, and the stream time then.
    pub last_record_wall: i64,
    pub observed_at_last_record: i64,
}

impl<K, V, VA> WindowAggregate<K, V, VA> {
    pub fn new(
        store_name: String,
        windows: TimeWindows,
        folder: Folder<K, V, VA>,
        emit: EmitStrategy,
        caching: bool,
    ) -> Self {
        Self {
            store_name,
            windows,
            folder,
            emit,
            caching,
            store: None,
            observed: i64::MIN,
            emitted_until: i64::MIN,
            progress: None,
            idle_close_ms: None,
            last_record_wall: i64::MIN,
            observed_at_last_record: i64::MIN,
        }
    }
}

impl<K, V, VA> WindowAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    fn emit_closed(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Option<VA>>,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let close = self.observed.saturating_sub(self.windows.grace_ms);
        if close <= self.emitted_until {
            return Ok(());
        }
        let size = self.windows.size_ms;
        // Windows whose end lies in (emitted_until, close].
        let from = self.emitted_until.saturating_sub(size).saturating_add(1);
        let to = close.saturating_sub(size);
        // Windows start only at multiples of the advance: most advances of stream time close
        // none, and then the store is not read at all.
        let advance = self.windows.advance_ms.max(1);
        let first_start = from.max(0).saturating_add(advance - 1) / advance * advance;
        let mut closed = if first_start > to {
            Vec::new()
        } else {
            store.fetch_all(from, to)?
        };
        closed.sort_by_key(|(_, start, _)| *start);
        for (key, start, value) in closed {
            let end = start + size;
            ctx.forward(Record::new(
                Windowed { key, start, end },
                Some(value),
                end - 1,
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

impl<K, V, VA> Processor<K, V, Windowed<K>, Option<VA>> for WindowAggregate<K, V, VA>
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
        if let (Some(idle), EmitStrategy::OnWindowClose) = (self.idle_close_ms, self.emit) {
            let every = std::time::Duration::from_millis((idle / 4).clamp(1, 1_000) as u64);
            ctx.schedule(every, crate::time::PunctuationType::WallClock);
        }
        Ok(())
    }

    fn punctuate(
        &mut self,
        _: crate::processor::ScheduleId,
        now: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Option<VA>>,
    ) -> Result<()> {
        let Some(idle) = self.idle_close_ms else {
            return Ok(());
        };
        if self.last_record_wall == i64::MIN || now.saturating_sub(self.last_record_wall) < idle {
            return Ok(());
        }
        let advanced = self
            .observed_at_last_record
            .saturating_add(now.saturating_sub(self.last_record_wall));
        if advanced > self.observed {
            self.observed = advanced;
            self.emit_closed(ctx)?;
        }
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Option<VA>>,
    ) -> Result<()> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let ts = record.timestamp;
        self.observed = self.observed.max(ts);
        self.last_record_wall = ctx.wall_clock_ms();
        self.observed_at_last_record = self.observed;
        let close = self.observed.saturating_sub(self.windows.grace_ms);
        if self.emit == EmitStrategy::OnWindowClose {
            // Before the update, so that a jump in stream time cannot expire a closed window
            // from the store before it was emitted.
            self.emit_closed(ctx)?;
        }
        for start in self.windows.windows_for(ts) {
            let end = start + self.windows.size_ms;
            if end <= close {
                ctx.record_dropped("late-record");
                continue;
            }
            let old = store.fetch(&record.key, start)?;
            let new = (self.folder)(&record.key, record.value.clone(), old);
            store.put(&record.key, start, Some(&new))?;
            if self.emit == EmitStrategy::OnWindowUpdate {
                // A cached update goes downstream at commit, with this record's timestamp.
                if !self.caching {
                    let key = Windowed {
                        key: record.key.clone(),
                        start,
                        end,
                    };
                    ctx.forward(Record::new(key, Some(new), ts))?;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Option<VA>>) -> Result<()> {
        // Stream time reaches the progress store once per commit, not once per record.
        if let Some(progress) = &mut self.progress {
            progress.observed(self.observed)?;
        }
        let Some(store) = &self.store else {
            return Ok(());
        };
        let flushed = store.flush_cache()?;
        if self.emit == EmitStrategy::OnWindowUpdate && self.caching {
            // Each window with the timestamp of the record that last updated it.
            for (key, start, value, ts) in flushed {
                let end = start + self.windows.size_ms;
                ctx.forward(Record::new(Windowed { key, start, end }, value, ts))?;
            }
        }
        Ok(())
    }
}
