//! `KTable::map_values`: transforms each row; deletes stay deletes.

use std::sync::Arc;

use crate::error::Result;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;

pub(crate) struct TableMapValues<K, V, V2> {
    pub f: Arc<dyn Fn(&K, V) -> V2 + Send + Sync>,
}

impl<K, V, V2> Processor<K, Option<V>, K, Option<V2>> for TableMapValues<K, V, V2>
where
    K: Clone + Send + 'static,
    V: 'static,
    V2: Clone + Send + 'static,
{
    fn process(
        &mut self,
        record: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<'_, K, Option<V2>>,
    ) -> Result<()> {
        let value = record.value.map(|v| (self.f)(&record.key, v));
        ctx.forward(Record {
            key: record.key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}
