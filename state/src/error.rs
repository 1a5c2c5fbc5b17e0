//! The one error type of `eddy-state`, classified by what the caller should do with it.

use thiserror::Error;

/// What went wrong in a state store.
#[derive(Debug, Error)]
pub enum StateError {
    /// RocksDB reported an error; the store may be unusable.
    #[error("rocksdb error in store `{store}`: {source}")]
    RocksDb {
        store: String,
        #[source]
        source: rocksdb::Error,
    },
    /// Stored bytes did not decode: the local state is corrupt and must be rebuilt from its changelog.
    #[error("store `{store}` holds corrupt data: {reason}")]
    Corrupted { store: String, reason: String },
    /// The store is closed or was never opened.
    #[error("store `{0}` is closed")]
    Closed(String),
    /// A store was asked for by a name that the task does not have.
    #[error("no store named `{0}`")]
    UnknownStore(String),
    /// A filesystem operation on the state directory failed.
    #[error("state directory error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A store was configured with values that cannot work.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// A write to a read-only view of a store.
    #[error("store `{0}` is read-only here")]
    ReadOnly(String),
}

/// How a caller should react to a [`StateError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Stop the task and the worker: retrying will not help.
    Fatal,
    /// Wipe the local store and restore it from its changelog.
    StateCorrupted,
    /// Try the operation again later.
    Retriable,
}

impl StateError {
    /// The class of this error, which decides whether the task retries, restores or stops.
    pub fn class(&self) -> ErrorClass {
        match self {
            StateError::Corrupted { .. } => ErrorClass::StateCorrupted,
            StateError::RocksDb { source, .. } => match source.kind() {
                rocksdb::ErrorKind::Busy
                | rocksdb::ErrorKind::TimedOut
                | rocksdb::ErrorKind::TryAgain
                | rocksdb::ErrorKind::Incomplete => ErrorClass::Retriable,
                rocksdb::ErrorKind::Corruption => ErrorClass::StateCorrupted,
                _ => ErrorClass::Fatal,
            },
            StateError::Io { .. } => ErrorClass::Retriable,
            StateError::Closed(_)
            | StateError::UnknownStore(_)
            | StateError::Config(_)
            | StateError::ReadOnly(_) => ErrorClass::Fatal,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;
