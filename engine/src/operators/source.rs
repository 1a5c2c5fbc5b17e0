//! The source node: turns the task's input record into a typed record for its children.

use crate::error::{EngineError, Result, SerdeError};
use crate::processor::node::{DynRecord, Node};
use crate::processor::ScheduleId;
use crate::record::Record;
use crate::serdes::SerdeRef;
use crate::task::core::TaskCore;

pub(crate) struct SourceNode<K, V> {
    pub key: SerdeRef<K>,
    pub value: SerdeRef<V>,
}

impl<K: Send + Clone + 'static, V: Send + Clone + 'static> Node for SourceNode<K, V> {
    fn init(&mut self, _core: &mut TaskCore, _id: usize) -> Result<()> {
        Ok(())
    }
    fn process(&mut self, rec: DynRecord, core: &mut TaskCore, id: usize) -> Result<()> {
        // A record forwarded into a source (never done by the DSL) passes straight through.
        let info = std::sync::Arc::clone(&core.info);
        for &child in &info[id].children {
            let r = DynRecord {
                key: Box::new(rec.key.downcast_ref::<K>().cloned()),
                value: Box::new(rec.value.downcast_ref::<V>().cloned()),
                timestamp: rec.timestamp,
                headers: rec.headers.clone(),
            };
            core.dispatch(child, r)?;
        }
        Ok(())
    }
    fn process_input(&mut self, core: &mut TaskCore, id: usize) -> Result<()> {
        let Some(input) = core.input.as_ref() else {
            return Ok(());
        };
        let err = |part: &'static str, source: SerdeError| EngineError::Deserialization {
            part,
            topic: input.topic.clone(),
            partition: input.partition,
            offset: input.offset,
            source,
        };
        // A null key reads as empty bytes for serdes that have no null (strings, bytes).
        let key = match self.key.deserialize_nullable(input.key.as_deref()) {
            Err(SerdeError::Null) => self.key.deserialize(&[]),
            other => other,
        }
        .map_err(|e| err("key", e))?;
        let value = self
            .value
            .deserialize_nullable(input.value.as_deref())
            .map_err(|e| err("value", e))?;
        let record = Record {
            key,
            value,
            timestamp: core.metadata_timestamp(),
            headers: input.headers.clone(),
        };
        let info = std::sync::Arc::clone(&core.info);
        let children = &info[id].children;
        let mut record = Some(record);
        for (i, &child) in children.iter().enumerate() {
            let rec = if i + 1 == children.len() {
                record.take()
            } else {
                record.clone()
            };
            if let Some(rec) = rec {
                core.dispatch(child, DynRecord::erase(rec))?;
            }
        }
        Ok(())
    }
    fn punctuate(&mut self, _: ScheduleId, _: i64, _: &mut TaskCore, _: usize) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self, _core: &mut TaskCore, _id: usize) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) {}
}
