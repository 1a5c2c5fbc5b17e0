//! Type-erased nodes: how typed processors sit in one task graph.

use std::any::Any;
use std::marker::PhantomData;

use crate::error::{EngineError, Result};
use crate::processor::{Processor, ProcessorContext, ScheduleId};
use crate::record::{Headers, Record};
use crate::task::core::TaskCore;

/// A record whose key and value types are known only to the nodes at either end of an edge.
pub(crate) struct DynRecord {
    pub key: Box<dyn Any + Send>,
    pub value: Box<dyn Any + Send>,
    pub timestamp: i64,
    pub headers: Headers,
}

impl DynRecord {
    pub fn erase<K: Send + 'static, V: Send + 'static>(r: Record<K, V>) -> Self {
        Self {
            key: Box::new(r.key),
            value: Box::new(r.value),
            timestamp: r.timestamp,
            headers: r.headers,
        }
    }

    pub fn downcast<K: 'static, V: 'static>(self, node: &str) -> Result<Record<K, V>> {
        let wrong = |part: &str, want: &str| {
            EngineError::Topology(format!(
                "node `{node}` received a {part} that is not a `{want}`"
            ))
        };
        let key = *self
            .key
            .downcast::<K>()
            .map_err(|_| wrong("key", std::any::type_name::<K>()))?;
        let value = *self
            .value
            .downcast::<V>()
            .map_err(|_| wrong("value", std::any::type_name::<V>()))?;
        Ok(Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        })
    }
}

/// A node of a task: a processor, or a source or sink.
pub(crate) trait Node: Send {
    fn init(&mut self, core: &mut TaskCore, id: usize) -> Result<()>;
    fn process(&mut self, rec: DynRecord, core: &mut TaskCore, id: usize) -> Result<()>;
    /// Sources turn the task's current input record into typed records.
    fn process_input(&mut self, core: &mut TaskCore, id: usize) -> Result<()> {
        let _ = core;
        Err(EngineError::Topology(format!("node {id} is not a source")))
    }
    fn punctuate(
        &mut self,
        schedule: ScheduleId,
        ts: i64,
        core: &mut TaskCore,
        id: usize,
    ) -> Result<()>;
    fn flush(&mut self, core: &mut TaskCore, id: usize) -> Result<()>;
    fn close(&mut self);
}

/// Runs a typed [`Processor`] as a [`Node`].
pub(crate) struct ProcessorNode<P, KIn, VIn, KOut, VOut> {
    processor: P,
    _types: PhantomData<fn(KIn, VIn) -> (KOut, VOut)>,
}

impl<P, KIn, VIn, KOut, VOut> ProcessorNode<P, KIn, VIn, KOut, VOut> {
    pub fn new(processor: P) -> Self {
        Self {
            processor,
            _types: PhantomData,
        }
    }
}

impl<P, KIn, VIn, KOut, VOut> Node for ProcessorNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KIn: 'static,
    VIn: 'static,
    KOut: Clone + Send + 'static,
    VOut: Clone + Send + 'static,
{
    fn init(&mut self, core: &mut TaskCore, id: usize) -> Result<()> {
        self.processor.init(&mut ProcessorContext::new(core, id))
    }
    fn process(&mut self, rec: DynRecord, core: &mut TaskCore, id: usize) -> Result<()> {
        let record = rec.downcast::<KIn, VIn>(&core.info[id].name)?;
        self.processor
            .process(record, &mut ProcessorContext::new(core, id))
    }
    fn punctuate(
        &mut self,
        schedule: ScheduleId,
        ts: i64,
        core: &mut TaskCore,
        id: usize,
    ) -> Result<()> {
        self.processor
            .punctuate(schedule, ts, &mut ProcessorContext::new(core, id))
    }
    fn flush(&mut self, core: &mut TaskCore, id: usize) -> Result<()> {
        self.processor.flush(&mut ProcessorContext::new(core, id))
    }
    fn close(&mut self) {
        self.processor.close();
    }
}
