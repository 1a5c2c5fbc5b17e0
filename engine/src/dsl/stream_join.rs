//! Windowed stream–stream joins on `KStream`: inner, left and outer.

use std::sync::Arc;

use eddy_state::StoreKind;

use crate::dsl::kstream::{or_default, KStream};
use crate::dsl::options::Materialized;
use crate::dsl::windows::JoinWindows;
use crate::dsl::{Data, StoredData};
use crate::operators::passthrough::PassThrough;
use crate::operators::stream_stream_join::{JoinSide, SideJoiner, TimeSeqSerde};
use crate::serdes::Serdes;

type BothJoiner<K, V1, V2, VR> = Arc<dyn Fn(&K, Option<&V1>, Option<&V2>) -> VR + Send + Sync>;

impl<K: StoredData + PartialEq, V: StoredData> KStream<K, V> {
    /// Inner join: a result for each pair of records with equal keys within the join window.
    pub fn join<V2: StoredData, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, &V2) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        // Inner joins never call the joiner with a missing side.
        let joiner: BothJoiner<K, V, V2, Option<VR>> = Arc::new(move |_, l, r| match (l, r) {
            (Some(l), Some(r)) => Some(joiner(l, r)),
            _ => None,
        });
        self.stream_join(other, joiner, windows, false, false)
    }

    /// Left join: as inner, plus each left record that found no partner once its window closed,
    /// joined with `None`.
    pub fn left_join<V2: StoredData, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        let joiner: BothJoiner<K, V, V2, Option<VR>> =
            Arc::new(move |_, l, r| l.map(|l| joiner(l, r)));
        self.stream_join(other, joiner, windows, true, false)
    }

    /// Outer join: as left join, and likewise for unmatched right records.
    pub fn outer_join<V2: StoredData, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        let joiner: BothJoiner<K, V, V2, Option<VR>> = Arc::new(move |_, l, r| Some(joiner(l, r)));
        self.stream_join(other, joiner, windows, true, true)
    }

    fn stream_join<V2: StoredData, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: BothJoiner<K, V, V2, Option<VR>>,
        w: JoinWindows,
        left_outer: bool,
        right_outer: bool,
    ) -> KStream<K, VR> {
        let left = self.repartitioned_if_needed(None);
        let right = other.repartitioned_if_needed(None);
        let key = or_default(left.key_serde.clone());
        let retention = w.before_ms + w.after_ms + w.grace_ms + 1;
        let window = StoreKind::Window {
            retention_ms: retention,
            segment_interval_ms: None,
            retain_duplicates: true,
            time_ordered: false,
        };
        let mut st = self.dsl.borrow_mut();
        let this_name = st.name("KSTREAM-JOINTHIS-STORE");
        let other_name = st.name("KSTREAM-JOINOTHER-STORE");
        let left_unmatched = left_outer.then(|| st.name("KSTREAM-OUTERTHIS-STORE"));
        let right_unmatched = right_outer.then(|| st.name("KSTREAM-OUTEROTHER-STORE"));

        let (j, tn, on, lu, ru) = (
            Arc::clone(&joiner),
            this_name.clone(),
            other_name.clone(),
            left_unmatched.clone(),
            right_unmatched.clone(),
        );
        let this_node = st.processor(
            "KSTREAM-JOINTHIS",
            move || JoinSide::<K, V, V2, Option<VR>> {
                this_store_name: tn.clone(),
                other_store_name: on.clone(),
                this_unmatched_name: lu.clone(),
                other_unmatched_name: ru.clone(),
                before_ms: w.before_ms,
                after_ms: w.after_ms,
                grace_ms: w.grace_ms,
                joiner: Arc::clone(&j) as SideJoiner<K, V, V2, Option<VR>>,
                this_store: None,
                other_store: None,
                this_unmatched: None,
                other_unmatched: None,
                seq: 0,
            },
            &[&left.node],
        );
        let (tn, on, lu, ru) = (
            this_name.clone(),
            other_name.clone(),
            left_unmatched.clone(),
            right_unmatched.clone(),
        );
        let other_node = st.processor(
            "KSTREAM-JOINOTHER",
            move || {
                let j = Arc::clone(&joiner);
                JoinSide::<K, V2, V, Option<VR>> {
                    this_store_name: on.clone(),
                    other_store_name: tn.clone(),
                    this_unmatched_name: ru.clone(),
                    other_unmatched_name: lu.clone(),
                    // A right record at t joins left records in [t - after, t + before].
                    before_ms: w.after_ms,
                    after_ms: w.before_ms,
                    grace_ms: w.grace_ms,
                    joiner: Arc::new(move |k, r, l| j(k, l, r)),
                    this_store: None,
                    other_store: None,
                    this_unmatched: None,
                    other_unmatched: None,
                    seq: 0,
                }
            },
            &[&right.node],
        );
        let internal = |name: &str| Materialized::<K, V>::named(name).without_caching();
        let both = [this_node.as_str(), other_node.as_str()];
        st.store(
            &internal(&this_name),
            "",
            window.clone(),
            Arc::clone(&key),
            or_default(left.value_serde.clone()),
            &both,
        );
        st.store(
            &Materialized::<K, V2>::named(&other_name).without_caching(),
            "",
            window,
            Arc::clone(&key),
            or_default(right.value_serde.clone()),
            &both,
        );
        if let Some(name) = &left_unmatched {
            st.store(
                &Materialized::<(i64, i64), (K, V)>::named(name).without_caching(),
                "",
                StoreKind::KeyValue,
                Arc::new(TimeSeqSerde),
                Serdes::bincode(),
                &both,
            );
        }
        if let Some(name) = &right_unmatched {
            st.store(
                &Materialized::<(i64, i64), (K, V2)>::named(name).without_caching(),
                "",
                StoreKind::KeyValue,
                Arc::new(TimeSeqSerde),
                Serdes::bincode(),
                &both,
            );
        }
        let merged = st.processor(
            "KSTREAM-MERGE",
            || PassThrough::<K, Option<VR>>(std::marker::PhantomData),
            &both,
        );
        // Drop the `None` that an inner side produces for a missing partner.
        let node = st.processor(
            "KSTREAM-JOIN-RESULT",
            || crate::operators::flat_map::FlatMap {
                f: Arc::new(|k: K, v: Option<VR>| v.map(|v| (k, v)).into_iter().collect())
                    as crate::operators::flat_map::FlatMapFn<K, Option<VR>, K, VR>,
            },
            &[&merged],
        );
        drop(st);
        KStream::new(self.dsl.clone(), node, Some(key), None, false)
    }
}
