//! Emit-on-close progress of a windowed aggregation, kept in a small logged store next to the
//! window store: how far stream time had got and up to where windows were emitted. A restarted
//! or moved task reads it back, so it neither emits a closed window twice nor takes a late record
//! into a window it already emitted.

use crate::dsl::windows::EmitStrategy;
use crate::error::Result;
use crate::processor::{KeyValueStoreHandle, ProcessorContext};

const OBSERVED: &str = "observed";
const EMITTED_UNTIL: &str = "emitted-until";

/// The name of the progress store of the window or session store `store`.
pub(crate) fn progress_store_name(store: &str) -> String {
    format!("{store}-emit-progress")
}

/// Where a windowed aggregation over `store` resumes in `init`: its progress store under
/// emit-on-close, and the stream time it has observed and the time windows were emitted until
/// (`i64::MIN` when unknown). The observed time is at least the task's stream time, which a
/// restarted or moved task takes up from its checkpoint or its committed offsets, so records that
/// were late before are late still.
pub(crate) fn resume<KO: Clone + Send + 'static, VO: Clone + Send + 'static>(
    ctx: &ProcessorContext<'_, KO, VO>,
    store: &str,
    emit: EmitStrategy,
) -> Result<(Option<EmitProgress>, i64, i64)> {
    if emit != EmitStrategy::OnWindowClose {
        return Ok((None, ctx.stream_time(), i64::MIN));
    }
    let (progress, observed, emitted) = EmitProgress::open(ctx, store)?;
    Ok((Some(progress), observed.max(ctx.stream_time()), emitted))
}

/// Reads and writes one aggregation's progress.
pub(crate) struct EmitProgress {
    handle: KeyValueStoreHandle<String, i64>,
    saved_observed: i64,
}

impl EmitProgress {
    /// Opens the progress of the aggregation over `store`. Returns it with the stream time seen
    /// and the time up to which windows were emitted (`i64::MIN` when nothing was recorded).
    fn open<KO: Clone + Send + 'static, VO: Clone + Send + 'static>(
        ctx: &ProcessorContext<'_, KO, VO>,
        store: &str,
    ) -> Result<(Self, i64, i64)> {
        let handle = ctx.key_value_store::<String, i64>(&progress_store_name(store))?;
        let observed = handle.get(&OBSERVED.to_string())?.unwrap_or(i64::MIN);
        let emitted = handle.get(&EMITTED_UNTIL.to_string())?.unwrap_or(i64::MIN);
        let progress = Self {
            handle,
            saved_observed: observed,
        };
        Ok((progress, observed, emitted))
    }

    /// Records the stream time seen; called when the task commits.
    pub fn observed(&mut self, observed: i64) -> Result<()> {
        if observed > self.saved_observed {
            self.handle.put(&OBSERVED.to_string(), &observed)?;
            self.saved_observed = observed;
        }
        Ok(())
    }

    /// Records that windows closing at or before `until` were emitted.
    pub fn emitted(&mut self, until: i64) -> Result<()> {
        self.handle.put(&EMITTED_UNTIL.to_string(), &until)
    }
}
