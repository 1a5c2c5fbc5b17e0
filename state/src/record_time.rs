//! The timestamp of the record a task is processing, shared by the task and its stores: a
//! change-logging store stamps each changelog record with it, and a caching store remembers it
//! per key and puts it back when it writes the key down, so that results and changelogs carry
//! the timestamp of the record that last updated a key, wherever commits fall.
//!
//! ```
//! use eddy_state::RecordTime;
//! let time = RecordTime::default();
//! time.set(1_000);
//! assert_eq!(time.clone().get(), 1_000);
//! ```

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A shared cell holding the current record's timestamp (0 before the first record).
#[derive(Debug, Clone, Default)]
pub struct RecordTime(Arc<AtomicI64>);

impl RecordTime {
    /// Sets the timestamp of the record being processed.
    pub fn set(&self, timestamp: i64) {
        self.0.store(timestamp, Ordering::Relaxed);
    }

    /// The timestamp of the record being processed.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}
