//! `filter` / `filter_not`: forwards the records a predicate keeps.

use std::sync::Arc;

use crate::error::Result;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;

pub(crate) type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

pub(crate) struct Filter<K, V> {
    pub predicate: Predicate<K, V>,
    /// `filter_not`: keep what the predicate rejects.
    pub negate: bool,
}

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Processor<K, V, K, V> for Filter<K, V> {
    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V>,
    ) -> Result<()> {
        if (self.predicate)(&record.key, &record.value) != self.negate {
            ctx.forward(record)?;
        }
        Ok(())
    }
}
