//! `count` / `reduce` / `aggregate` of a grouped stream into a key-value store; the result is a
//! table whose updates go downstream (held back by the store's cache until commit).

use std::sync::Arc;

use crate::error::Result;
use crate::processor::{KeyValueStoreHandle, Processor, ProcessorContext};
use crate::record::Record;

/// Folds a value into a key's aggregate, `None` before the key's first value (so `reduce`
/// needs no initial value).
pub(crate) type Folder<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;

pub(crate) struct Aggregate<K, V, VA> {
    pub store_name: String,
    pub folder: Folder<K, V, VA>,
    /// With a caching store, updates go downstream at commit, collapsed per key.
    pub caching: bool,
    pub store: Option<KeyValueStoreHandle<K, VA>>,
}

impl<K, V, VA> Aggregate<K, V, VA> {
    pub fn new(store_name: String, folder: Folder<K, V, VA>, caching: bool) -> Self {
        Self {
            store_name,
            folder,
            caching,
            store: None,
        }
    }
}

impl<K, V, VA> Processor<K, V, K, Option<VA>> for Aggregate<K, V, VA>
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
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, Option<VA>>,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let old = store.get(&record.key)?;
        let new = (self.folder)(&record.key, record.value, old);
        store.put(&record.key, &new)?;
        if self.caching {
            Ok(())
        } else {
            ctx.forward(Record {
                key: record.key,
                value: Some(new),
                timestamp: record.timestamp,
                headers: record.headers,
            })
        }
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

/// Writes a caching aggregate store down and forwards what it held: each key with the
/// timestamp of the record that last updated it, wherever the commit falls.
pub(crate) fn forward_flushed<K, VA>(
    store: &KeyValueStoreHandle<K, VA>,
    ctx: &mut ProcessorContext<'_, K, Option<VA>>,
) -> Result<()>
where
    K: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    for (key, value, ts) in store.flush_cache()? {
        ctx.forward(Record::new(key, value, ts))?;
    }
    Ok(())
}
