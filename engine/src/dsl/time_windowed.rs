//! `TimeWindowedKStream`: a grouped stream over tumbling or hopping windows.

use std::sync::Arc;

use eddy_state::StoreKind;

use crate::dsl::kstream::{or_default, KStream};
use crate::dsl::ktable::KTable;
use crate::dsl::options::Materialized;
use crate::dsl::windows::{EmitStrategy, TimeWindows};
use crate::dsl::StoredData;
use crate::operators::aggregate::Folder;
use crate::operators::window_aggregate::WindowAggregate;
use crate::record::Windowed;
use crate::serdes::{SerdeRef, Serdes};

/// A grouped stream cut into time windows.
pub struct TimeWindowedKStream<K, V> {
    stream: KStream<K, V>,
    key: SerdeRef<K>,
    value: SerdeRef<V>,
    windows: TimeWindows,
    emit: EmitStrategy,
    idle_close: Option<std::time::Duration>,
}

/// The folders behind `count`, `reduce` and `aggregate`, shared by every windowed stream.
pub(crate) fn count_folder<K, V>() -> Folder<K, V, i64> {
    Arc::new(|_, _, n: Option<i64>| n.unwrap_or(0) + 1)
}

pub(crate) fn reduce_folder<K, V: 'static>(
    reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
) -> Folder<K, V, V> {
    Arc::new(move |_, v, agg: Option<V>| match agg {
        Some(a) => reducer(a, v),
        None => v,
    })
}

pub(crate) fn aggregate_folder<K, V, VA: 'static>(
    init: impl Fn() -> VA + Send + Sync + 'static,
    aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
) -> Folder<K, V, VA> {
    Arc::new(move |k, v, agg: Option<VA>| aggregator(k, v, agg.unwrap_or_else(&init)))
}

impl<K: StoredData, V: StoredData> TimeWindowedKStream<K, V> {
    pub(crate) fn new(
        stream: KStream<K, V>,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        windows: TimeWindows,
    ) -> Self {
        Self {
            stream,
            key,
            value,
            windows,
            emit: EmitStrategy::OnWindowUpdate,
            idle_close: None,
        }
    }

    /// When results go downstream: on every update (default) or once per window at close.
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// With [`EmitStrategy::OnWindowClose`]: when no record arrives for `idle` of wall-clock
    /// time, stream time moves on by the idle time, closing (and emitting) the windows a busy
    /// input would have closed by then. Records older than the moved stream time minus grace
    /// are then late.
    pub fn close_on_idle(mut self, idle: std::time::Duration) -> Self {
        self.idle_close = Some(idle);
        self
    }

    /// Records per key and window.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let m = materialized.or_value_serde(Serdes::i64);
        self.fold(count_folder(), m)
    }

    /// Values per key and window combined with `reducer`.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let m = materialized.or_value_serde(|| Arc::clone(&self.value));
        self.fold(reduce_folder(reducer), m)
    }

    /// Values per key and window folded into `VA` from `init()`.
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
        let retention = materialized
            .retention_ms
            .unwrap_or(0)
            .max(w.size_ms + w.grace_ms);
        let mut st = self.stream.dsl.borrow_mut();
        let store_name = materialized
            .name
            .clone()
            .unwrap_or_else(|| st.name("KSTREAM-AGGREGATE-STATE-STORE"));
        let (sn, emit, caching) = (store_name.clone(), self.emit, materialized.caching);
        let idle = self.idle_close.map(|d| d.as_millis() as i64);
        let node = st.processor(
            "KSTREAM-WINDOWED-AGGREGATE",
            move || {
                let mut op =
                    WindowAggregate::new(sn.clone(), w, Arc::clone(&folder), emit, caching);
                op.idle_close_ms = idle;
                op
            },
            &[&self.stream.node],
        );
        let kind = StoreKind::Window {
            retention_ms: retention,
            segment_interval_ms: None,
            retain_duplicates: false,
            // Emit-on-close reads windows by the time they close.
            time_ordered: emit == EmitStrategy::OnWindowClose,
        };
        if emit == EmitStrategy::OnWindowClose {
            st.emit_progress_store(&store_name, &materialized, &node);
        }
        let mat = Materialized {
            name: Some(store_name.clone()),
            ..materialized
        };
        st.store(
            &mat,
            "",
            kind,
            Arc::clone(&key),
            Arc::clone(&value),
            &[&node],
        );
        st.topo.store_window_size(&store_name, w.size_ms);
        drop(st);
        // The window store is queried by window; a join on this table materializes it anew.
        KTable::new(
            self.stream.dsl.clone(),
            node,
            Some(Serdes::windowed(key)),
            Some(value),
            None,
        )
    }
}
