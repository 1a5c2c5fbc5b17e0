//! The `Processor` trait that every operator and every user processor implements.

use crate::error::Result;
use crate::processor::context::ProcessorContext;
use crate::record::Record;

/// Identifies a punctuation schedule of a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScheduleId(pub u64);

/// One step of a topology: takes records of `(KIn, VIn)` and forwards records of `(KOut, VOut)`.
///
/// A new instance runs in each task (sub-topology × partition). Stores are fetched from the
/// context in [`Processor::init`] and kept; punctuations are scheduled there too.
///
/// ```
/// use eddy_engine::{Processor, ProcessorContext, Record, Result};
///
/// /// Forwards each value's length.
/// struct Lengths;
/// impl Processor<String, String, String, usize> for Lengths {
///     fn process(&mut self, record: Record<String, String>, ctx: &mut ProcessorContext<'_, String, usize>) -> Result<()> {
///         let len = record.value.len();
///         ctx.forward(record.with_value(len))
///     }
/// }
/// ```
pub trait Processor<KIn, VIn, KOut, VOut>: Send + 'static {
    /// Called once before the first record: fetch stores, schedule punctuations.
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
    /// Handles one record.
    fn process(
        &mut self,
        record: Record<KIn, VIn>,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
    ) -> Result<()>;
    /// Called when a schedule made with [`ProcessorContext::schedule`] fires; `timestamp` is the
    /// stream time or wall-clock time that made it fire.
    fn punctuate(
        &mut self,
        schedule: ScheduleId,
        timestamp: i64,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
    ) -> Result<()> {
        let _ = (schedule, timestamp, ctx);
        Ok(())
    }
    /// Called on every commit, before the stores flush: a processor that holds results back in
    /// a caching store forwards them here.
    fn flush(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
    /// Called once when the task closes.
    fn close(&mut self) {}
}
