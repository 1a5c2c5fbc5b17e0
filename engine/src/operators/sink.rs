//! The sink node: serializes records and hands them to the task's collector for a topic.

use crate::error::{EngineError, Result};
use crate::processor::node::{DynRecord, Node};
use crate::processor::ScheduleId;
use crate::serdes::SerdeRef;
use crate::task::collector::ProducedRecord;
use crate::task::core::TaskCore;

pub(crate) struct SinkNode<K, V> {
    /// The topic as the broker knows it (internal topics carry the application id).
    pub topic: String,
    /// A repartition topic, whose name on the broker starts with the application id.
    pub internal: bool,
    pub key: SerdeRef<K>,
    pub value: SerdeRef<V>,
}

impl<K: Send + 'static, V: Send + 'static> Node for SinkNode<K, V> {
    fn init(&mut self, core: &mut TaskCore, _id: usize) -> Result<()> {
        if self.internal {
            self.topic = format!("{}-{}", core.application_id, self.topic);
            self.internal = false;
        }
        Ok(())
    }
    fn process(&mut self, rec: DynRecord, core: &mut TaskCore, id: usize) -> Result<()> {
        let record = rec.downcast::<K, V>(&core.info[id].name)?;
        let err = |source| EngineError::Serialization {
            target: format!("topic {}", self.topic),
            source,
        };
        let key = self.key.serialize_nullable(&record.key).map_err(err)?;
        let value = self.value.serialize_nullable(&record.value).map_err(err)?;
        core.produced.push(ProducedRecord {
            topic: self.topic.clone(),
            partition: None,
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        });
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
