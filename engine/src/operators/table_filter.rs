//! `KTable::filter`: a row that fails the predicate becomes a delete downstream.

use crate::error::Result;
use crate::operators::filter::Predicate;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;

pub(crate) struct TableFilter<K, V> {
    pub predicate: Predicate<K, V>,
    pub negate: bool,
}

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Processor<K, Option<V>, K, Option<V>>
    for TableFilter<K, V>
{
    fn process(
        &mut self,
        record: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<'_, K, Option<V>>,
    ) -> Result<()> {
        let keep = record
            .value
            .as_ref()
            .is_some_and(|v| (self.predicate)(&record.key, v) != self.negate);
        let value = if keep { record.value } else { None };
        ctx.forward(Record {
            key: record.key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}
