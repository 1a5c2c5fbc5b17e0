//! A node that forwards what it gets: the meeting point of `merge` and the branches of `split`.

use std::marker::PhantomData;

use crate::error::Result;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;

pub(crate) struct PassThrough<K, V>(pub PhantomData<fn(K, V)>);

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Processor<K, V, K, V>
    for PassThrough<K, V>
{
    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, V>,
    ) -> Result<()> {
        ctx.forward(record)
    }
}
