//! `KGroupedTable::aggregate` (and `count`, `reduce`): a group's aggregate takes each change of
//! its rows, subtracting the old value and adding the new one.

use std::sync::Arc;

use crate::error::Result;
use crate::operators::aggregate::forward_flushed;
use crate::processor::{KeyValueStoreHandle, Processor, ProcessorContext};
use crate::record::{Change, Record};

/// Folds a value into (or out of) a group's aggregate.
pub(crate) type TableFolder<K, V, VA> = Arc<dyn Fn(&K, V, VA) -> VA + Send + Sync>;

pub(crate) struct TableAggregate<K, V, VA> {
    pub store_name: String,
    pub initializer: Arc<dyn Fn() -> VA + Send + Sync>,
    pub adder: TableFolder<K, V, VA>,
    pub subtractor: TableFolder<K, V, VA>,
    pub caching: bool,
    pub store: Option<KeyValueStoreHandle<K, VA>>,
}

impl<K, V, VA> Processor<K, Change<V>, K, Option<VA>> for TableAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Option<VA>>) -> Result<()> {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<'_, K, Option<VA>>,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let Change { old, new } = record.value;
        if old.is_none() && new.is_none() {
            return Ok(());
        }
        let mut agg = match store.get(&record.key)? {
            Some(a) => a,
            None => (self.initializer)(),
        };
        if let Some(old) = old {
            agg = (self.subtractor)(&record.key, old, agg);
        }
        if let Some(new) = new {
            agg = (self.adder)(&record.key, new, agg);
        }
        store.put(&record.key, &agg)?;
        if self.caching {
            return Ok(());
        }
        ctx.forward(Record::new(record.key, Some(agg), record.timestamp))
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, K, Option<VA>>) -> Result<()> {
        if !self.caching {
            return Ok(());
        }
        match &self.store {
            Some(store) => forward_flushed(store, ctx),
            None => Ok(()),
        }
    }
}
