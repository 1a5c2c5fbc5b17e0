//! `map`, `map_values`, `select_key`: one record in, one record out, with a new key or value.

use std::sync::Arc;

use crate::error::Result;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;

pub(crate) type MapFn<K, V, K2, V2> = Arc<dyn Fn(K, V) -> (K2, V2) + Send + Sync>;

pub(crate) struct Map<K, V, K2, V2> {
    pub f: MapFn<K, V, K2, V2>,
}

impl<K, V, K2, V2> Processor<K, V, K2, V2> for Map<K, V, K2, V2>
where
    K: 'static,
    V: 'static,
    K2: Clone + Send + 'static,
    V2: Clone + Send + 'static,
{
    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K2, V2>,
    ) -> Result<()> {
        let (key, value) = (self.f)(record.key, record.value);
        ctx.forward(Record {
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}
