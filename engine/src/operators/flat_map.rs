//! `flat_map` / `flat_map_values`: one record in, any number out.

use std::sync::Arc;

use crate::error::Result;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;

pub(crate) type FlatMapFn<K, V, K2, V2> = Arc<dyn Fn(K, V) -> Vec<(K2, V2)> + Send + Sync>;

pub(crate) struct FlatMap<K, V, K2, V2> {
    pub f: FlatMapFn<K, V, K2, V2>,
}

impl<K, V, K2, V2> Processor<K, V, K2, V2> for FlatMap<K, V, K2, V2>
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
        for (key, value) in (self.f)(record.key, record.value) {
            ctx.forward(Record {
                key,
                value,
                timestamp: record.timestamp,
                headers: record.headers.clone(),
            })?;
        }
        Ok(())
    }
}
