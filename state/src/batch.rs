//! A task's committed state changes and checkpoint, written to RocksDB in one atomic batch.

use std::collections::BTreeMap;

/// One change in a [`StateBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchOp {
    Put {
        store: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        store: String,
        key: Vec<u8>,
    },
    /// Removes `[from, to)`; applied before the puts and deletes of the same store that follow it.
    DeleteRange {
        store: String,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// The changes of one committed transaction across a task's stores, in the order they apply.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StateBatch {
    pub(crate) ops: Vec<BatchOp>,
}

impl StateBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `key` of `store` to `value`.
    pub fn put(&mut self, store: &str, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp::Put {
            store: store.to_string(),
            key,
            value,
        });
    }
    /// Removes `key` from `store`.
    pub fn delete(&mut self, store: &str, key: Vec<u8>) {
        self.ops.push(BatchOp::Delete {
            store: store.to_string(),
            key,
        });
    }
    /// Removes every key of `store` in `[from, to)`.
    pub fn delete_range(&mut self, store: &str, from: Vec<u8>, to: Vec<u8>) {
        self.ops.push(BatchOp::DeleteRange {
            store: store.to_string(),
            from,
            to,
        });
    }
    /// The number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// How far a task's local state has got: for each logged store, the changelog offset to restore
/// from (one past the last record the state contains), and the task's stream time.
///
/// It is written in the same atomic batch as the state changes it describes, so local state is
/// always exactly the changelog up to these offsets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Store name → next changelog offset to read.
    pub changelog_offsets: BTreeMap<String, i64>,
    /// The largest event time the task had seen (`None`: not recorded).
    pub stream_time: Option<i64>,
    /// Input topic → next offset of the task's partition of it that the state reflects: the
    /// position a query of this state answers at. Topics not named keep their earlier values.
    pub input_offsets: BTreeMap<String, i64>,
}
