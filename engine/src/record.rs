//! Records as processors see them: key, value, timestamp and headers, plus where they came from.

use serde::{Deserialize, Serialize};

/// Kafka record headers, in order; a key may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Option<Vec<u8>>)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a header.
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.0.push((key.into(), Some(value.into())));
        self
    }
    /// The last value of `key`.
    pub fn last(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A record flowing between processors.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    pub key: K,
    pub value: V,
    /// Event time in milliseconds since the epoch.
    pub timestamp: i64,
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    /// A record with no headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Self {
            key,
            value,
            timestamp,
            headers: Headers::new(),
        }
    }
    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }
}

/// Where the record being processed was read: absent for records a punctuation creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A key within a time window: the key of every windowed aggregation's result.
/// Time windows are `[start, end)`; session windows are `[start, end]`, as in Kafka Streams.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Windowed<K> {
    pub key: K,
    pub start: i64,
    pub end: i64,
}

/// An update of a table row as a re-grouped table's aggregation sees it: the row's old value
/// (to subtract from its old group) and its new one (to add to its new group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<V> {
    pub old: Option<V>,
    pub new: Option<V>,
}
