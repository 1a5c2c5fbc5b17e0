//! What a task produces: records for sink, repartition and changelog topics, and dead letters.

use std::sync::Arc;

use eddy_state::ChangelogSink;
use parking_lot::Mutex;

use crate::record::Headers;

/// A record a task wants written to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedRecord {
    pub topic: String,
    /// `None`: the producer's partitioner picks (murmur2 of the key, as Kafka's default).
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    pub headers: Headers,
}

/// A record that could not be processed, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    pub error: String,
}

/// One change of one store, bound for `<application.id>-<store>-changelog`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    pub store: String,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// The timestamp of the record that made the change.
    pub timestamp: i64,
}

/// Collects the changes of a task's logged stores until the task hands them on.
#[derive(Debug, Default)]
pub(crate) struct ChangelogBuffer(Mutex<Vec<ChangelogRecord>>);

impl ChangelogBuffer {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn drain(&self) -> Vec<ChangelogRecord> {
        std::mem::take(&mut *self.0.lock())
    }
}

impl ChangelogSink for ChangelogBuffer {
    fn log(&self, store: &str, key: &[u8], value: Option<&[u8]>, timestamp: i64) {
        self.0.lock().push(ChangelogRecord {
            store: store.to_string(),
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
            timestamp,
        });
    }
}
