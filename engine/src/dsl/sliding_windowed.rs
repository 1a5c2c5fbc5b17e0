//! `SlidingWindowedKStream`: a grouped stream over Kafka Streams' sliding windows.

use std::sync::Arc;

use eddy_state::StoreKind;

use crate::dsl::kstream::{or_default, KStream};
use crate::dsl::ktable::KTable;
use crate::dsl::options::Materialized;
use crate::dsl::time_windowed::{aggregate_folder, count_folder, reduce_folder};
use crate::dsl::windows::{EmitStrategy, SlidingWindows};
use crate::dsl::StoredData;
use crate::operators::aggregate::Folder;
use crate::operators::sliding_aggregate::SlidingAggregate;
use crate::record::Windowed;
use crate::serdes::{SerdeRef, Serdes};

/// A grouped stream over sliding windows; results are keyed by `Windowed { key, start, end }`
/// with both ends inclusive.
pub struct SlidingWindowedKStream<K, V> {
    stream: KStream<K, V>,
    key: SerdeRef<K>,
    value: SerdeRef<V>,
    windows: SlidingWindows,
    emit: EmitStrategy,
}

impl<K: StoredData, V: StoredData> SlidingWindowedKStream<K, V> {
    pub(crate) fn new(
        stream: KStream<K, V>,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        windows: SlidingWindows,
    ) -> Self {
        Self {
            stream,
            key,
            value,
            windows,
            emit: EmitStrategy::OnWindowUpdate,
        }
    }

    /// When results go downstream: on every update (default) or once per window at close.
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Records per window.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let m = materialized.or_value_serde(Serdes::i64);
        self.fold(count_folder(), m)
    }

    /// Values per window combined with `reducer`.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let m = materialized.or_value_serde(|| Arc::clone(&self.value));
        self.fold(reduce_folder(reducer), m)
    }

    /// Values per window folded into `VA` from `init()`.
    pub fn aggregate<VA: StoredData>(
        &self,
        init: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        self.fold(aggregate_folder(init, aggregator), materialized)
    }

    fn fold<VA: StoredData>(
        &self,
        folder: Folder<K, V, VA>,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let key = materialized
            .key
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.key));
        let value = or_default(materialized.value.clone());
        let w = self.windows;
        // Windows reach back 2d from the newest record they can still change.
        let retention = materialized
            .retention_ms
            .unwrap_or(0)
            .max(2 * w.time_difference_ms + w.grace_ms + 1);
        let mut st = self.stream.dsl.borrow_mut();
        let store_name = materialized
            .name
            .clone()
            .unwrap_or_else(|| st.name("KSTREAM-AGGREGATE-STATE-STORE"));
        let records_name = format!("{store_name}-records");
        let (sn, rn, emit) = (store_name.clone(), records_name.clone(), self.emit);
        let node = st.processor(
            "KSTREAM-SLIDING-WINDOWED-AGGREGATE",
            move || SlidingAggregate::new(sn.clone(), rn.clone(), w, Arc::clone(&folder), emit),
            &[&self.stream.node],
        );
        // The records store is read by key; the windows of emit-on-close by the time they close.
        let window = |dups, time_ordered| StoreKind::Window {
            retention_ms: retention,
            segment_interval_ms: None,
            retain_duplicates: dups,
            time_ordered,
        };
        let records = Materialized::<K, V> {
            name: Some(records_name),
            key: None,
            value: None,
            persistent: materialized.persistent,
            caching: false,
            logging: materialized.logging,
            retention_ms: None,
        };
        st.store(
            &records,
            "",
            window(true, false),
            Arc::clone(&key),
            Arc::clone(&self.value),
            &[&node],
        );
        if self.emit == EmitStrategy::OnWindowClose {
            st.emit_progress_store(&store_name, &materialized, &node);
        }
        let mat = Materialized {
            name: Some(store_name),
            ..materialized
        };
        st.store(
            &mat,
            "",
            window(false, self.emit == EmitStrategy::OnWindowClose),
            Arc::clone(&key),
            Arc::clone(&value),
            &[&node],
        );
        if let Some(name) = &mat.name {
            st.topo.store_window_size(name, w.time_difference_ms);
        }
        drop(st);
        KTable::new(
            self.stream.dsl.clone(),
            node,
            Some(Serdes::windowed(key)),
            Some(value),
            None,
        )
    }
}
