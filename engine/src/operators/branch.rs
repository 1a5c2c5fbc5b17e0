//! `split` / `branch`: sends each record to the first branch whose predicate accepts it.

use crate::error::Result;
use crate::operators::filter::Predicate;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;

pub(crate) struct Branch<K, V> {
    /// (child node name, predicate); a branch without a predicate takes everything left.
    pub branches: Vec<(String, Option<Predicate<K, V>>)>,
}

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Processor<K, V, K, V> for Branch<K, V> {
    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V>,
    ) -> Result<()> {
        for (child, predicate) in &self.branches {
            if predicate
                .as_ref()
                .is_none_or(|p| p(&record.key, &record.value))
            {
                return ctx.forward_to(child, record);
            }
        }
        Ok(())
    }
}
