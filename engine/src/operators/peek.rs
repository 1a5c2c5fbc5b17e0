//! `peek`: calls a function on each record and forwards it unchanged.

use std::sync::Arc;

use crate::error::Result;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;

pub(crate) struct Peek<K, V> {
    pub f: Arc<dyn Fn(&K, &V) + Send + Sync>,
}

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Processor<K, V, K, V> for Peek<K, V> {
    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V>,
    ) -> Result<()> {
        (self.f)(&record.key, &record.value);
        ctx.forward(record)
    }
}
