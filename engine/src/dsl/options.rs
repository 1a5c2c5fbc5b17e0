//! Options of DSL operations: `Consumed`, `Produced`, `Grouped`, `Materialized`.

use std::sync::Arc;
use std::time::Duration;

use crate::serdes::SerdeRef;
use crate::time::TimestampExtractor;

/// How a source reads a topic: serdes and an optional timestamp extractor.
pub struct Consumed<K, V> {
    pub(crate) key: SerdeRef<K>,
    pub(crate) value: SerdeRef<V>,
    pub(crate) extractor: Option<Arc<dyn TimestampExtractor>>,
}

impl<K, V> Consumed<K, V> {
    /// Reads keys and values with these serdes.
    pub fn with(key: SerdeRef<K>, value: SerdeRef<V>) -> Self {
        Self {
            key,
            value,
            extractor: None,
        }
    }
    /// Takes event time from `extractor` instead of the record timestamp.
    pub fn with_timestamp_extractor(mut self, extractor: Arc<dyn TimestampExtractor>) -> Self {
        self.extractor = Some(extractor);
        self
    }
}

/// How a sink writes a topic. Without serdes, the stream's own serdes are used.
pub struct Produced<K, V> {
    pub(crate) key: Option<SerdeRef<K>>,
    pub(crate) value: Option<SerdeRef<V>>,
}

impl<K, V> Default for Produced<K, V> {
    fn default() -> Self {
        Self {
            key: None,
            value: None,
        }
    }
}

impl<K, V> Produced<K, V> {
    /// Writes keys and values with these serdes.
    pub fn with(key: SerdeRef<K>, value: SerdeRef<V>) -> Self {
        Self {
            key: Some(key),
            value: Some(value),
        }
    }
    /// Writes values with this serde and keys with the stream's.
    pub fn with_value(value: SerdeRef<V>) -> Self {
        Self {
            key: None,
            value: Some(value),
        }
    }
}

/// How a stream is grouped: the name of its repartition topic and the serdes to use there.
pub struct Grouped<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key: Option<SerdeRef<K>>,
    pub(crate) value: Option<SerdeRef<V>>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Self {
            name: None,
            key: None,
            value: None,
        }
    }
}

impl<K, V> Grouped<K, V> {
    /// A grouping whose repartition topic is `<application.id>-<name>-repartition`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// Sets the key and value serdes.
    pub fn with(mut self, key: SerdeRef<K>, value: SerdeRef<V>) -> Self {
        self.key = Some(key);
        self.value = Some(value);
        self
    }
}

/// How a table or aggregation is stored: its (queryable) name, serdes, and store options.
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key: Option<SerdeRef<K>>,
    pub(crate) value: Option<SerdeRef<V>>,
    pub(crate) persistent: bool,
    pub(crate) caching: bool,
    pub(crate) logging: bool,
    pub(crate) retention_ms: Option<i64>,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Self {
            name: None,
            key: None,
            value: None,
            persistent: true,
            caching: true,
            logging: true,
            retention_ms: None,
        }
    }
}

impl<K, V> Materialized<K, V> {
    /// The same, with `default` as the value serde unless one was set.
    pub(crate) fn or_value_serde(mut self, default: impl FnOnce() -> SerdeRef<V>) -> Self {
        if self.value.is_none() {
            self.value = Some(default());
        }
        self
    }

    /// An unnamed store (named by the topology, not meant for queries).
    pub fn new() -> Self {
        Self::default()
    }
    /// A store called `name`, which queries and tests can read.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// Sets the key serde (default: the stream's, else `Serdes::default_for`).
    pub fn with_key_serde(mut self, key: SerdeRef<K>) -> Self {
        self.key = Some(key);
        self
    }
    /// Sets the value serde (default: the stream's for tables and reduce, else `Serdes::default_for`).
    pub fn with_value_serde(mut self, value: SerdeRef<V>) -> Self {
        self.value = Some(value);
        self
    }
    /// Keeps the store in memory instead of RocksDB (its changelog still restores it).
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }
    /// Sends every update downstream at once instead of collapsing them until commit.
    pub fn without_caching(mut self) -> Self {
        self.caching = false;
        self
    }
    /// No changelog: the store is not restored when the task moves.
    pub fn without_logging(mut self) -> Self {
        self.logging = false;
        self
    }
    /// How long a window or session store keeps data (at least window size plus grace).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention_ms = Some(retention.as_millis() as i64);
        self
    }
}
