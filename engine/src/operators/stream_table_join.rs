//! Stream–table join (inner and left): each stream record looks up the table's current row.

use std::sync::Arc;

use crate::error::Result;
use crate::processor::{KeyValueStoreHandle, Processor, ProcessorContext};
use crate::record::Record;

pub(crate) struct StreamTableJoin<K, V, VT, VR> {
    pub table_store: String,
    /// Left join: a record with no row joins with `None`.
    pub left: bool,
    /// `None`: nothing to forward (an inner join without a row).
    pub joiner: Arc<dyn Fn(&K, V, Option<&VT>) -> Option<VR> + Send + Sync>,
    pub store: Option<KeyValueStoreHandle<K, VT>>,
}

impl<K, V, VT, VR> Processor<K, V, K, VR> for StreamTableJoin<K, V, VT, VR>
where
    K: Clone + Send + 'static,
    V: 'static,
    VT: 'static,
    VR: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        self.store = Some(ctx.key_value_store(&self.table_store)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, VR>,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let row = store.get(&record.key)?;
        if row.is_none() && !self.left {
            return Ok(());
        }
        let Some(value) = (self.joiner)(&record.key, record.value, row.as_ref()) else {
            return Ok(());
        };
        ctx.forward(Record {
            key: record.key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}
