//! `KGroupedStream`: a stream grouped by key, to count, reduce or aggregate, or to window.

use std::sync::Arc;

use crate::dsl::kstream::{or_default, KStream};
use crate::dsl::ktable::KTable;
use crate::dsl::options::Materialized;
use crate::dsl::session_windowed::SessionWindowedKStream;
use crate::dsl::sliding_windowed::SlidingWindowedKStream;
use crate::dsl::streams_builder::key_value_aggregate;
use crate::dsl::time_windowed::TimeWindowedKStream;
use crate::dsl::windows::{SessionWindows, SlidingWindows, TimeWindows};
use crate::dsl::StoredData;
use crate::operators::aggregate::{Aggregate, Folder};
use crate::serdes::{SerdeRef, Serdes};

/// A stream grouped by its key, partitioned so that each key lives in one task.
pub struct KGroupedStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) key: SerdeRef<K>,
    pub(crate) value: SerdeRef<V>,
}

impl<K: StoredData, V: StoredData> KGroupedStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>, key: SerdeRef<K>, value: SerdeRef<V>) -> Self {
        Self { stream, key, value }
    }

    /// The number of records per key.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let materialized = materialized.or_value_serde(Serdes::i64);
        self.aggregate(|| 0i64, |_, _, n| n + 1, materialized)
    }

    /// Combines the values per key with `reducer(aggregate, value)`; a key's first value is its
    /// aggregate as it is.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let value = materialized
            .value
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.value));
        let materialized = Materialized {
            value: Some(value),
            ..materialized
        };
        self.fold(
            Arc::new(move |_, v, old: Option<V>| match old {
                Some(agg) => reducer(agg, v),
                None => v,
            }),
            materialized,
        )
    }

    /// Folds the values per key into `VA`, starting from `init()`.
    pub fn aggregate<VA: StoredData>(
        &self,
        init: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        self.fold(
            Arc::new(move |k, v, old: Option<VA>| aggregator(k, v, old.unwrap_or_else(&init))),
            materialized,
        )
    }

    fn fold<VA: StoredData>(
        &self,
        folder: Folder<K, V, VA>,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        let key = materialized
            .key
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.key));
        let value = or_default(materialized.value.clone());
        key_value_aggregate(
            &self.stream.dsl,
            "KSTREAM-AGGREGATE",
            "KSTREAM-AGGREGATE-STATE-STORE",
            &self.stream.node,
            materialized,
            key,
            value,
            move |store, caching| Aggregate::new(store, Arc::clone(&folder), caching),
        )
    }

    /// Tumbling or hopping windows.
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream::new(
            self.stream.clone(),
            Arc::clone(&self.key),
            Arc::clone(&self.value),
            windows,
        )
    }

    /// Kafka Streams' sliding windows.
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> SlidingWindowedKStream<K, V> {
        SlidingWindowedKStream::new(
            self.stream.clone(),
            Arc::clone(&self.key),
            Arc::clone(&self.value),
            windows,
        )
    }

    /// Session windows.
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream::new(
            self.stream.clone(),
            Arc::clone(&self.key),
            Arc::clone(&self.value),
            windows,
        )
    }
}
