//! Writes a table's updates into its store and forwards them: the source of a `table()` and
//! any table that a join or a query needs materialized.

use crate::error::Result;
use crate::processor::{KeyValueStoreHandle, Processor, ProcessorContext};
use crate::record::Record;

pub(crate) struct TableMaterialize<K, V> {
    pub store_name: String,
    pub caching: bool,
    pub store: Option<KeyValueStoreHandle<K, V>>,
}

impl<K, V> TableMaterialize<K, V> {
    pub fn new(store_name: String, caching: bool) -> Self {
        Self {
            store_name,
            caching,
            store: None,
        }
    }
}

impl<K, V> Processor<K, Option<V>, K, Option<V>> for TableMaterialize<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Option<V>>) -> Result<()> {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<'_, K, Option<V>>,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        match &record.value {
            Some(v) => store.put(&record.key, v)?,
            None => {
                store.delete(&record.key)?;
            }
        }
        if self.caching {
            Ok(())
        } else {
            ctx.forward(record)
        }
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, K, Option<V>>) -> Result<()> {
        if !self.caching {
            return Ok(());
        }
        let Some(store) = &self.store else {
            return Ok(());
        };
        // Each key with the timestamp of the record that last updated it.
        for (key, value, ts) in store.flush_cache()? {
            ctx.forward(Record::new(key, value, ts))?;
        }
        Ok(())
    }
}
