//! Table–table join (inner and left), one processor per side: an update on either side looks up
//! the other side's store and forwards the joined row, or a delete when there is none.

use std::sync::Arc;

use crate::error::Result;
use crate::processor::{KeyValueStoreHandle, Processor, ProcessorContext};
use crate::record::Record;

/// The joined row of a left row and the right row (if any); `None`: no row.
pub(crate) type TableJoiner<V1, V2, VR> = Arc<dyn Fn(&V1, Option<&V2>) -> Option<VR> + Send + Sync>;

pub(crate) struct TableTableJoin<K, VL, VR, VOut> {
    /// The store of the other side.
    pub other_store: String,
    pub left_join: bool,
    pub joiner: TableJoiner<VL, VR, VOut>,
    pub left: Option<KeyValueStoreHandle<K, VL>>,
    pub right: Option<KeyValueStoreHandle<K, VR>>,
}

impl<K, VL, VR, VOut> TableTableJoin<K, VL, VR, VOut>
where
    K: 'static,
    VL: 'static,
    VR: 'static,
{
    fn result(&self, left: Option<&VL>, right: Option<&VR>) -> Option<VOut> {
        match (left, right) {
            (Some(l), Some(r)) => (self.joiner)(l, Some(r)),
            (Some(l), None) if self.left_join => (self.joiner)(l, None),
            _ => None,
        }
    }
}

/// The left side's processor: updates of the left table.
impl<K, VL, VR, VOut> Processor<K, Option<VL>, K, Option<VOut>> for TableTableJoin<K, VL, VR, VOut>
where
    K: Clone + Send + 'static,
    VL: Clone + Send + 'static,
    VR: Clone + Send + 'static,
    VOut: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Option<VOut>>) -> Result<()> {
        self.right = Some(ctx.key_value_store(&self.other_store)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, Option<VL>>,
        ctx: &mut ProcessorContext<'_, K, Option<VOut>>,
    ) -> Result<()> {
        let right = match &self.right {
            Some(store) => store.get(&record.key)?,
            None => None,
        };
        let value = self.result(record.value.as_ref(), right.as_ref());
        ctx.forward(Record {
            key: record.key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}

/// The right side's processor: the same join, fed by the right table.
pub(crate) struct RightSide<K, VL, VR, VOut>(pub TableTableJoin<K, VL, VR, VOut>);

impl<K, VL, VR, VOut> Processor<K, Option<VR>, K, Option<VOut>> for RightSide<K, VL, VR, VOut>
where
    K: Clone + Send + 'static,
    VL: Clone + Send + 'static,
    VR: Clone + Send + 'static,
    VOut: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Option<VOut>>) -> Result<()> {
        self.0.left = Some(ctx.key_value_store(&self.0.other_store)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, Option<VR>>,
        ctx: &mut ProcessorContext<'_, K, Option<VOut>>,
    ) -> Result<()> {
        let left = match &self.0.left {
            Some(store) => store.get(&record.key)?,
            None => None,
        };
        if left.is_none() {
            // No left row: neither join has anything to say about this key.
            return Ok(());
        }
        let value = self.0.result(left.as_ref(), record.value.as_ref());
        ctx.forward(Record {
            key: record.key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}
