//! `SessionWindowedKStream`: a grouped stream cut into sessions of activity.

use std::sync::Arc;

use eddy_state::StoreKind;

use crate::dsl::kstream::{or_default, KStream};
use crate::dsl::ktable::KTable;
use crate::dsl::options::Materialized;
use crate::dsl::time_windowed::{aggregate_folder, count_folder, reduce_folder};
use crate::dsl::windows::{EmitStrategy, SessionWindows};
use crate::dsl::StoredData;
use crate::operators::aggregate::Folder;
use crate::operators::session_aggregate::{Merger, SessionAggregate};
use crate::record::Windowed;
use crate::serdes::{SerdeRef, Serdes};

/// A grouped stream cut into sessions; results are keyed by `Windowed { key, start, end }` with
/// `end` the last record's time, and a merge deletes the sessions it replaced.
pub struct SessionWindowedKStream<K, V> {
    stream: KStream<K, V>,
    key: SerdeRef<K>,
    value: SerdeRef<V>,
    windows: SessionWindows,
    emit: EmitStrategy,
}

impl<K: StoredData, V: StoredData> SessionWindowedKStream<K, V> {
    pub(crate) fn new(
        stream: KStream<K, V>,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        windows: SessionWindows,
    ) -> Self {
        Self {
            stream,
            key,
            value,
            windows,
            emit: EmitStrategy::OnWindowUpdate,
        }
    }

    /// When results go downstream: on every update (default) or once per session at close.
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Records per session.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let m = materialized.or_value_serde(Serdes::i64);
        self.fold(count_folder(), Arc::new(|_, a, b| a + b), m)
    }

    /// Values per session combined with `reducer` (which also merges sessions).
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let m = materialized.or_value_serde(|| Arc::clone(&self.value));
        let reducer = Arc::new(reducer);
        let r = Arc::clone(&reducer);
        self.fold(
            reduce_folder(move |a, b| r(a, b)),
            Arc::new(move |_, a, b| reducer(a, b)),
            m,
        )
    }

    /// Values per session folded into `VA`; `merger` combines two sessions that a record joins.
    pub fn aggregate<VA: StoredData>(
        &self,
        init: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        merger: impl Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        self.fold(
            aggregate_folder(init, aggregator),
            Arc::new(merger),
            materialized,
        )
    }

    fn fold<VA: StoredData>(
        &self,
        folder: Folder<K, V, VA>,
        merger: Merger<K, VA>,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let key = materialized
            .key
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.key));
        let value = or_default(materialized.value.clone());
        let w = self.windows;
        // A session ending at `e` can still change (and is emitted on close only after) stream
        // time `e + gap + grace`: it must be live until then, one past gap + grace.
        let retention = materialized
            .retention_ms
            .unwrap_or(0)
            .max(w.gap_ms.saturating_add(w.grace_ms).saturating_add(1));
        let mut st = self.stream.dsl.borrow_mut();
        let store_name = materialized
            .name
            .clone()
            .unwrap_or_else(|| st.name("KSTREAM-AGGREGATE-STATE-STORE"));
        let (sn, emit, caching) = (store_name.clone(), self.emit, materialized.caching);
        // Emit-on-close finds the sessions that close by their end, in a time-ordered index.
        let ends_name = (emit == EmitStrategy::OnWindowClose).then(|| format!("{store_name}-ends"));
        let en = ends_name.clone();
        let node = st.processor(
            "KSTREAM-SESSION-WINDOWED-AGGREGATE",
            move || {
                let mut op = SessionAggregate::new(
                    sn.clone(),
                    w,
                    Arc::clone(&folder),
                    Arc::clone(&merger),
                    emit,
                    caching,
                );
                op.ends_store_name = en.clone();
                op
            },
            &[&self.stream.node],
        );
        if self.emit == EmitStrategy::OnWindowClose {
            st.emit_progress_store(&store_name, &materialized, &node);
        }
        if let Some(ends_name) = ends_name {
            let ends = Materialized::<K, i64> {
                name: Some(ends_name),
                key: None,
                value: None,
                persistent: materialized.persistent,
                caching: materialized.caching,
                logging: materialized.logging,
                retention_ms: None,
            };
            st.store(
                &ends,
                "",
                StoreKind::Window {
                    retention_ms: retention,
                    segment_interval_ms: None,
                    retain_duplicates: false,
                    time_ordered: true,
                },
                Arc::clone(&key),
                Serdes::i64(),
                &[&node],
            );
        }
        let mat = Materialized {
            name: Some(store_name),
            ..materialized
        };
        st.store(
            &mat,
            "",
            StoreKind::Session {
                retention_ms: retention,
            },
            Arc::clone(&key),
            Arc::clone(&value),
            &[&node],
        );
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
