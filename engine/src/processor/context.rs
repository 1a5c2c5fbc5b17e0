//! The context a processor runs in: forwarding, record metadata, time, punctuation and stores.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{EngineError, Result};
use crate::processor::node::DynRecord;
use crate::processor::stores::{KeyValueStoreHandle, SessionStoreHandle, WindowStoreHandle};
use crate::processor::ScheduleId;
use crate::record::{Record, RecordMetadata};
use crate::task::core::TaskCore;
use crate::task::schedule::Schedule;
use crate::time::PunctuationType;

/// What a processor can do besides computing: forward records to its children, read the metadata
/// of the record being processed, schedule punctuations and reach its stores.
pub struct ProcessorContext<'a, KOut, VOut> {
    core: &'a mut TaskCore,
    node: usize,
    _types: PhantomData<fn(KOut, VOut)>,
}

impl<'a, KOut, VOut> ProcessorContext<'a, KOut, VOut>
where
    KOut: Clone + Send + 'static,
    VOut: Clone + Send + 'static,
{
    pub(crate) fn new(core: &'a mut TaskCore, node: usize) -> Self {
        Self {
            core,
            node,
            _types: PhantomData,
        }
    }

    /// Sends `record` to every child of this processor.
    pub fn forward(&mut self, record: Record<KOut, VOut>) -> Result<()> {
        let info = Arc::clone(&self.core.info);
        let children = &info[self.node].children;
        let mut record = Some(record);
        for (i, &child) in children.iter().enumerate() {
            let rec = if i + 1 == children.len() {
                record.take()
            } else {
                record.clone()
            };
            if let Some(rec) = rec {
                self.core.dispatch(child, DynRecord::erase(rec))?;
            }
        }
        Ok(())
    }

    /// Sends `record` to the child named `child` only.
    pub fn forward_to(&mut self, child: &str, record: Record<KOut, VOut>) -> Result<()> {
        let info = Arc::clone(&self.core.info);
        let target = info[self.node]
            .children
            .iter()
            .copied()
            .find(|&c| info[c].name == child)
            .ok_or_else(|| {
                EngineError::Topology(format!(
                    "`{}` has no child named `{child}`",
                    info[self.node].name
                ))
            })?;
        self.core.dispatch(target, DynRecord::erase(record))
    }

    /// The names of this processor's children, in the order they were connected.
    pub fn child_names(&self) -> Vec<String> {
        self.core.info[self.node]
            .children
            .iter()
            .map(|&c| self.core.info[c].name.clone())
            .collect()
    }

    /// Topic, partition and offset of the input record being processed; `None` in a
    /// punctuation.
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.core.metadata.as_ref()
    }

    /// The largest record timestamp the task has seen.
    pub fn stream_time(&self) -> i64 {
        self.core.stream_time
    }

    /// The worker's wall-clock time in milliseconds (the test driver's manual clock in tests).
    pub fn wall_clock_ms(&self) -> i64 {
        self.core.clock.now_ms()
    }

    /// The id of the task this processor instance runs in.
    pub fn task_id(&self) -> &str {
        &self.core.task_id
    }

    /// The application id (`application.id`).
    pub fn application_id(&self) -> &str {
        &self.core.application_id
    }

    /// The name of this processor.
    pub fn name(&self) -> &str {
        &self.core.info[self.node].name
    }

    /// Calls [`crate::Processor::punctuate`] every `interval` of stream time or wall-clock time.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> ScheduleId {
        self.core.next_schedule += 1;
        let id = ScheduleId(self.core.next_schedule);
        let now = self.core.clock.now_ms();
        self.core.schedules.push(Schedule::new(
            id,
            self.node,
            interval.as_millis() as i64,
            kind,
            now,
        ));
        id
    }

    /// Stops a schedule.
    pub fn cancel(&mut self, schedule: ScheduleId) {
        for s in &mut self.core.schedules {
            if s.id == schedule {
                s.cancelled = true;
            }
        }
    }

    /// Counts a record this processor dropped on purpose (late, expired, no key), by reason.
    pub fn record_dropped(&mut self, reason: &str) {
        self.core.count_dropped(reason);
    }

    /// Sends the input record being processed to the dead-letter topic with `reason`, and
    /// counts it. The processor then simply returns.
    pub fn dead_letter(&mut self, reason: impl Into<String>) {
        self.core.count_dropped("dead-letter");
        self.core.dead_letter(reason.into());
    }

    /// Sends a record other than the current input (one a processor kept, say, and gave up on in
    /// a punctuation) to the dead-letter topic with its provenance and `reason`, and counts it.
    pub fn dead_letter_record(&mut self, record: crate::task::collector::DeadLetter) {
        self.core.count_dropped("dead-letter");
        self.core.dead_letters.push(record);
    }

    fn connected(&self, name: &str) -> Result<&crate::processor::StoreEntry> {
        let info = &self.core.info[self.node];
        if !info.stores.iter().any(|s| s == name) {
            return Err(EngineError::Topology(format!(
                "processor `{}` is not connected to store `{name}`",
                info.name
            )));
        }
        self.core
            .stores
            .get(name)
            .ok_or_else(|| EngineError::Topology(format!("store `{name}` was not built")))
    }

    /// The key-value store `name`, typed by the serdes it was defined with.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStoreHandle<K, V>> {
        KeyValueStoreHandle::new(self.connected(name)?, name)
    }

    /// The window store `name`.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStoreHandle<K, V>> {
        WindowStoreHandle::new(self.connected(name)?, name)
    }

    /// The session store `name`.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStoreHandle<K, V>> {
        SessionStoreHandle::new(self.connected(name)?, name)
    }
}
