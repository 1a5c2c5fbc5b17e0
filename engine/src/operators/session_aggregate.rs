//! Aggregation over session windows: a record joins every session of its key within the
//! inactivity gap, merging them into one. Emit-on-close keeps a second, time-ordered store of
//! each session's end (key and end → start), so that closing reads only the sessions that close.

use std::sync::Arc;

use crate::dsl::windows::{EmitStrategy, SessionWindows};
use crate::error::Result;
use crate::operators::aggregate::Folder;
use crate::operators::emit_progress::{self, EmitProgress};
use crate::processor::{Processor, ProcessorContext, SessionStoreHandle, WindowStoreHandle};
use crate::record::{Record, Windowed};

pub(crate) type Merger<K, VA> = Arc<dyn Fn(&K, VA, VA) -> VA + Send + Sync>;

pub(crate) struct SessionAggregate<K, V, VA> {
    pub store_name: String,
    pub windows: SessionWindows,
    pub folder: Folder<K, V, VA>,
    pub merger: Merger<K, VA>,
    pub emit: EmitStrategy,
    pub caching: bool,
    pub store: Option<SessionStoreHandle<K, VA>>,
    /// Emit-on-close: the index of session ends, `(key, end) -> start`.
    pub ends_store_name: Option<String>,
    pub ends: Option<WindowStoreHandle<K, i64>>,
    pub observed: i64,
    pub emitted_until: i64,
    /// Emit-on-close: `observed` and `emitted_until`, kept in a logged store.
    pub progress: Option<EmitProgress>,
}

impl<K, V, VA> SessionAggregate<K, V, VA> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store_name: String,
        windows: SessionWindows,
        folder: Folder<K, V, VA>,
        merger: Merger<K, VA>,
        emit: EmitStrategy,
        caching: bool,
    ) -> Self {
        Self {
            store_name,
            windows,
            folder,
            merger,
            emit,
            caching,
            store: None,
            ends_store_name: None,
            ends: None,
            observed: i64::MIN,
            emitted_until: i64::MIN,
            progress: None,
        }
    }

    /// Sessions ending before this time can no longer change (Kafka Streams' rule).
    fn close_time(&self) -> i64 {
        self.observed
            .saturating_sub(self.windows.grace_ms)
            .saturating_sub(self.windows.gap_ms)
    }
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Option<VA>> for SessionAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Option<VA>>) -> Result<()> {
        self.store = Some(ctx.session_store(&self.store_name)?);
        if let Some(name) = &self.ends_store_name {
            self.ends = Some(ctx.window_store(name)?);
        }
        let (progress, observed, emitted) =
            emit_progress::resume(ctx, &self.store_name, self.emit)?;
        self.progress = progress;
        self.observed = self.observed.max(observed);
        self.emitted_until = self.emitted_until.max(emitted);
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
        if self.emit == EmitStrategy::OnWindowClose {
            // Before the write that advances the store's time and may expire closed sessions.
            self.emit_closed(ctx)?;
        }
        let gap = self.windows.gap_ms;
        let overlapping = store.find_sessions(&record.key, ts - gap, ts + gap)?;
        let (mut start, mut end) = (ts, ts);
        for (s, e, _) in &overlapping {
            start = start.min(*s);
            end = end.max(*e);
        }
        if end < self.close_time() {
            ctx.record_dropped("late-record");
            return Ok(());
        }
        let mut agg: Option<VA> = None;
        for (s, e, value) in overlapping {
            agg = Some(match agg {
                Some(a) => (self.merger)(&record.key, a, value),
                None => value,
            });
            if (s, e) != (start, end) {
                store.remove(&record.key, s, e)?;
                if let Some(ends) = &self.ends {
                    // Before the merged session's entry, which may share this end.
                    ends.put(&record.key, e, None)?;
                }
                if self.emit == EmitStrategy::OnWindowUpdate && !self.caching {
                    let gone = Windowed {
                        key: record.key.clone(),
                        start: s,
                        end: e,
                    };
                    ctx.forward(Record::new(gone, None, ts))?;
                }
            }
        }
        let agg = (self.folder)(&record.key, record.value, agg);
        store.put(&record.key, start, end, &agg)?;
        if let Some(ends) = &self.ends {
            ends.put(&record.key, end, Some(&start))?;
        }
        match self.emit {
            // The cache forwards it at commit, with this record's timestamp.
            EmitStrategy::OnWindowUpdate if self.caching => {}
            EmitStrategy::OnWindowUpdate => {
                ctx.forward(Record::new(
                    Windowed {
                        key: record.key,
                        start,
                        end,
                    },
                    Some(agg),
                    ts,
                ))?;
            }
            EmitStrategy::OnWindowClose => {}
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
        if let Some(ends) = &self.ends {
            ends.flush_cache()?;
        }
        let flushed = store.flush_cache()?;
        if self.emit == EmitStrategy::OnWindowUpdate && self.caching {
            // Each session with the timestamp of the record that last updated it.
            for (key, start, end, value, ts) in flushed {
                ctx.forward(Record::new(Windowed { key, start, end }, value, ts))?;
            }
        }
        Ok(())
    }
}

impl<K, V, VA> SessionAggregate<K, V, VA>
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
        let close = self.close_time();
        if close <= self.emitted_until {
            return Ok(());
        }
        // The sessions ending in [emitted_until, close): from the index of ends when there is
        // one, else (a topology built without it) from every session.
        let mut closed: Vec<_> = match &self.ends {
            Some(ends) => {
                let mut out = Vec::new();
                for (key, end, start) in
                    ends.fetch_all(self.emitted_until, close.saturating_sub(1))?
                {
                    if let Some(value) = store.fetch_session(&key, start, end)? {
                        out.push((key, start, end, value));
                    }
                }
                out
            }
            None => store
                .all()?
                .into_iter()
                .filter(|(_, _, end, _)| *end < close && *end >= self.emitted_until)
                .collect(),
        };
        closed.sort_by_key(|(_, start, end, _)| (*end, *start));
        for (key, start, end, value) in closed {
            ctx.forward(Record::new(Windowed { key, start, end }, Some(value), end))?;
        }
        self.emitted_until = close;
        if let Some(progress) = &mut self.progress {
            progress.observed(self.observed)?;
            progress.emitted(close)?;
        }
        Ok(())
    }
}
