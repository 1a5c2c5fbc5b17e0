//! A RocksDB snapshot of one task's database, for reads from outside the task (interactive
//! queries, SQL): every store and the checkpoint are read as of one moment, so the rows and
//! the position they reflect come from the same commit however many commits land meanwhile.
//!
//! Only commit batches change a running task's database (each one atomic, with its
//! checkpoint), so a snapshot is always the state of one commit.

use std::sync::Arc;

use rocksdb::{ReadOptions, SnapshotWithThreadMode};

use crate::batch::Checkpoint;
use crate::error::Result;
use crate::rocks::{Db, RocksDbInstance, RocksDbKeyValueStore};

type DbSnapshot<'a> = SnapshotWithThreadMode<'a, Db>;

self_cell::self_cell!(
    /// A snapshot together with the database it is of (which it keeps open).
    struct SnapshotCell {
        owner: Arc<RocksDbInstance>,
        #[covariant]
        dependent: DbSnapshot,
    }
);

/// A snapshot that keeps its database open while it is held.
pub struct ReadSnapshot(SnapshotCell);

impl std::fmt::Debug for ReadSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSnapshot").finish_non_exhaustive()
    }
}

impl ReadSnapshot {
    /// A snapshot of `instance` as it is now.
    pub(crate) fn of(instance: &Arc<RocksDbInstance>) -> Self {
        Self(SnapshotCell::new(Arc::clone(instance), |db| {
            db.db().snapshot()
        }))
    }

    /// Read options that read as of the snapshot (valid while `self` is).
    pub(crate) fn read_options(&self) -> ReadOptions {
        let mut read = ReadOptions::default();
        read.set_snapshot(self.0.borrow_dependent());
        read
    }

    /// Store `name` (an existing one) as of the snapshot, read-only in effect: writing to it
    /// would write the live database, which read-only views refuse before it gets here.
    pub fn store(self: &Arc<Self>, name: &str) -> Result<RocksDbKeyValueStore> {
        self.0
            .borrow_owner()
            .existing_store_at(name, Arc::clone(self))
    }

    /// The checkpoint as of the snapshot.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        self.0.borrow_owner().checkpoint_with(self.read_options())
    }
}
