//! `KGroupedTable`: a table re-grouped by a key selected from each row, to count or aggregate
//! with an adder and a subtractor (a row that changes or moves leaves its old group).
//!
//! ```
//! use eddy_engine::testing::TopologyTestDriver;
//! use eddy_engine::{Consumed, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsConfig};
//! // Users per city, from a table of user → city.
//! let b = StreamsBuilder::new();
//! b.table("users", Consumed::with(Serdes::string(), Serdes::string()), Materialized::named("users"))
//!     .group_by(|_, city: &String| (city.clone(), 1i64), Grouped::named("by-city").with(Serdes::string(), Serdes::i64()))
//!     .count(Materialized::named("users-per-city"))
//!     .to_stream()
//!     .to("per-city", Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())));
//! let d = TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("cities")).unwrap();
//! let users = d.input_topic("users", Serdes::string(), Serdes::string());
//! users.pipe_str("ann", "Oslo".into(), 1).unwrap();
//! users.pipe_str("bob", "Oslo".into(), 2).unwrap();
//! users.pipe_str("ann", "Rome".into(), 3).unwrap(); // ann moves: Oslo 2 -> 1, Rome 1
//! let out = d.output_topic("per-city", Serdes::string(), Serdes::nullable(Serdes::i64()));
//! let last: std::collections::BTreeMap<_, _> = out.read_key_values().unwrap().into_iter().collect();
//! assert_eq!(last["Oslo"], Some(1));
//! assert_eq!(last["Rome"], Some(1));
//! ```

use std::sync::Arc;

use eddy_state::StoreKind;

use crate::dsl::kstream::{or_default, KStream};
use crate::dsl::ktable::KTable;
use crate::dsl::options::{Grouped, Materialized};
use crate::dsl::streams_builder::key_value_aggregate;
use crate::dsl::StoredData;
use crate::operators::table_aggregate::{TableAggregate, TableFolder};
use crate::operators::table_group_by::{Selector, TableGroupBy};
use crate::record::Change;
use crate::serdes::{SerdeRef, Serdes};

/// A table re-grouped by a selected key; see [`KTable::group_by`].
pub struct KGroupedTable<K, V> {
    /// The changes of each group, after the repartition by the group's key.
    changes: KStream<K, Change<V>>,
    key: SerdeRef<K>,
}

impl<K: StoredData, V: StoredData> KTable<K, V> {
    /// Re-groups the table by `selector(key, value) -> (group key, group value)`, repartitioning
    /// by the group key: an update of a row subtracts its old value from its old group and adds
    /// its new one to its new group (as Kafka Streams' `KTable#groupBy`).
    pub fn group_by<K2: StoredData + PartialEq, V2: StoredData>(
        &self,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
        grouped: Grouped<K2, V2>,
    ) -> KGroupedTable<K2, V2> {
        let key2 = or_default(grouped.key.clone());
        let value2 = or_default(grouped.value.clone());
        let selector: Selector<K, V, K2, V2> = Arc::new(selector);
        let mut st = self.dsl.borrow_mut();
        let name = grouped
            .name
            .clone()
            .unwrap_or_else(|| st.name("KTABLE-GROUPBY"));
        let store_name = format!("{name}-selections");
        let sn = store_name.clone();
        let node = st.processor(
            "KTABLE-SELECT",
            move || TableGroupBy {
                selector: Arc::clone(&selector),
                store_name: sn.clone(),
                store: None,
            },
            &[&self.node],
        );
        let selections = Materialized::<K, (K2, V2)>::named(store_name).without_caching();
        st.store(
            &selections,
            "",
            StoreKind::KeyValue,
            or_default(self.key_serde.clone()),
            Serdes::pair(Arc::clone(&key2), Arc::clone(&value2)),
            &[&node],
        );
        drop(st);
        let change_serde = Serdes::change(Arc::clone(&value2));
        let selected = KStream::new(
            self.dsl.clone(),
            node,
            Some(Arc::clone(&key2)),
            Some(Arc::clone(&change_serde)),
            true,
        );
        KGroupedTable {
            changes: selected.repartition_with(&name, Arc::clone(&key2), change_serde),
            key: key2,
        }
    }
}

impl<K: StoredData, V: StoredData> KGroupedTable<K, V> {
    /// Rows per group.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let materialized = materialized.or_value_serde(Serdes::i64);
        self.fold(
            Arc::new(|| 0i64),
            Arc::new(|_, _, n| n + 1),
            Arc::new(|_, _, n| n - 1),
            materialized,
        )
    }

    /// Values per group folded into `VA` from `init()`: `adder` takes a row's new value in,
    /// `subtractor` its old value out.
    pub fn aggregate<VA: StoredData>(
        &self,
        init: impl Fn() -> VA + Send + Sync + 'static,
        adder: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        subtractor: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        self.fold(
            Arc::new(init),
            Arc::new(adder),
            Arc::new(subtractor),
            materialized,
        )
    }

    fn fold<VA: StoredData>(
        &self,
        initializer: Arc<dyn Fn() -> VA + Send + Sync>,
        adder: TableFolder<K, V, VA>,
        subtractor: TableFolder<K, V, VA>,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        let key = materialized
            .key
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.key));
        let value = or_default(materialized.value.clone());
        key_value_aggregate(
            &self.changes.dsl,
            "KTABLE-AGGREGATE",
            "KTABLE-AGGREGATE-STATE-STORE",
            &self.changes.node,
            materialized,
            key,
            value,
            move |store_name, caching| TableAggregate {
                store_name,
                initializer: Arc::clone(&initializer),
                adder: Arc::clone(&adder),
                subtractor: Arc::clone(&subtractor),
                caching,
                store: None,
            },
        )
    }
}
