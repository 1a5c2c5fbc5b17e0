//! The one error type of `eddy-engine`, classified by what the caller does about it.

use eddy_state::{ErrorClass, StateError};
use thiserror::Error;

/// A value or key that could not be turned into or out of bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SerdeError {
    #[error("null where a value was required")]
    Null,
    #[error("invalid {format}: {reason}")]
    Invalid {
        format: &'static str,
        reason: String,
    },
}

/// What went wrong in the engine.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The topology was put together wrongly (found when it is built or started).
    #[error("invalid topology: {0}")]
    Topology(String),
    /// A configuration key or value is wrong.
    #[error("invalid configuration `{key}`: {reason}")]
    Config { key: String, reason: String },
    /// An input record's key or value did not decode.
    #[error("cannot deserialize {part} of record {topic}-{partition}@{offset}: {source}")]
    Deserialization {
        part: &'static str,
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: SerdeError,
    },
    /// A record could not be serialized for a topic or store.
    #[error("cannot serialize for `{target}`: {source}")]
    Serialization {
        target: String,
        #[source]
        source: SerdeError,
    },
    /// User code (a processor or DSL function) failed on a record.
    #[error("processing failed in `{processor}`: {reason}")]
    Processing { processor: String, reason: String },
    /// A state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The task no longer belongs to this worker (rebalanced away or fenced).
    #[error("task {0} migrated to another worker")]
    TaskMigrated(String),
    /// A Kafka client call failed; `kind` says what the caller does about it.
    #[error("{operation}: {source}")]
    Kafka {
        operation: String,
        kind: ErrorKind,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A query of the application's state that cannot be answered as asked (an unknown store,
    /// a store of another kind).
    #[error("invalid query: {0}")]
    Query(String),
    /// A SQL query that failed, with the SQLSTATE of why (both query endpoints send it).
    #[error("invalid query: {message}")]
    Sql {
        sqlstate: crate::query::SqlState,
        message: String,
    },
}

/// How a caller should react to an [`EngineError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Stop: retrying cannot help.
    Fatal,
    /// Close the task without committing and rejoin the group.
    TaskMigrated,
    /// Wipe the local state of the task and restore it from the changelog.
    StateCorrupted,
    /// Try again.
    Retriable,
    /// The record is bad: the configured exception handler decides (fail, or skip and count).
    BadRecord,
    /// The request (a query) is wrong: the caller fixes it; nothing else is affected.
    InvalidRequest,
}

impl EngineError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Topology(_) | EngineError::Config { .. } => ErrorKind::Fatal,
            EngineError::Deserialization { .. }
            | EngineError::Serialization { .. }
            | EngineError::Processing { .. } => ErrorKind::BadRecord,
            EngineError::State(e) => match e.class() {
                ErrorClass::Fatal => ErrorKind::Fatal,
                ErrorClass::StateCorrupted => ErrorKind::StateCorrupted,
                ErrorClass::Retriable => ErrorKind::Retriable,
            },
            EngineError::TaskMigrated(_) => ErrorKind::TaskMigrated,
            EngineError::Kafka { kind, .. } => *kind,
            // A partition that is moving or behind may be there when asked again.
            EngineError::Sql {
                sqlstate: crate::query::SqlState::NotAvailable,
                ..
            } => ErrorKind::Retriable,
            EngineError::Query(_) | EngineError::Sql { .. } => ErrorKind::InvalidRequest,
        }
    }

    /// A failed Kafka client call that the thread rewinds from (reopening its tasks).
    pub(crate) fn kafka(operation: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        EngineError::Kafka {
            operation: operation.into(),
            kind: ErrorKind::TaskMigrated,
            source,
        }
    }

    /// A failed Kafka client call that stops the thread.
    pub(crate) fn kafka_fatal(
        operation: impl Into<String>,
        source: rdkafka::error::KafkaError,
    ) -> Self {
        EngineError::Kafka {
            operation: operation.into(),
            kind: ErrorKind::Fatal,
            source,
        }
    }

    /// A processing error from user code.
    pub fn processing(processor: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        EngineError::Processing {
            processor: processor.into(),
            reason: reason.to_string(),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
