//! `KTable::group_by`: each update of a row becomes a change of its group — the old value
//! leaves the group it was in, the new one joins the group it selects — for the aggregation
//! after the repartition. The row's last selection is kept in a store of this node, so that
//! the old value is known whatever the table upstream keeps.

use std::sync::Arc;

use crate::error::Result;
use crate::processor::{KeyValueStoreHandle, Processor, ProcessorContext};
use crate::record::{Change, Record};

/// Maps a row to its group's key and the value it adds to the group.
pub(crate) type Selector<K, V, K2, V2> = Arc<dyn Fn(&K, &V) -> (K2, V2) + Send + Sync>;

pub(crate) struct TableGroupBy<K, V, K2, V2> {
    pub selector: Selector<K, V, K2, V2>,
    pub store_name: String,
    /// Row key → (group key, value) of its last selection.
    pub store: Option<KeyValueStoreHandle<K, (K2, V2)>>,
}

impl<K, V, K2, V2> Processor<K, Option<V>, K2, Change<V2>> for TableGroupBy<K, V, K2, V2>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    K2: Clone + PartialEq + Send + 'static,
    V2: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K2, Change<V2>>) -> Result<()> {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<'_, K2, Change<V2>>,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let old = store.get(&record.key)?;
        let new = record
            .value
            .as_ref()
            .map(|v| (self.selector)(&record.key, v));
        match &new {
            Some(selected) => store.put(&record.key, selected)?,
            None => {
                store.delete(&record.key)?;
            }
        }
        let ts = record.timestamp;
        match (old, new) {
            // The same group: one change, subtracting and adding at once.
            (Some((old_key, old_value)), Some((new_key, new_value))) if old_key == new_key => {
                let change = Change {
                    old: Some(old_value),
                    new: Some(new_value),
                };
                ctx.forward(Record::new(new_key, change, ts))
            }
            (old, new) => {
                if let Some((key, value)) = old {
                    let change = Change {
                        old: Some(value),
                        new: None,
                    };
                    ctx.forward(Record::new(key, change, ts))?;
                }
                if let Some((key, value)) = new {
                    let change = Change {
                        old: None,
                        new: Some(value),
                    };
                    ctx.forward(Record::new(key, change, ts))?;
                }
                Ok(())
            }
        }
    }
}
