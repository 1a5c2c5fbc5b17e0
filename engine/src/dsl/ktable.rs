//! `KTable`: a changelog stream read as the latest value per key; updates flow downstream as
//! `Option<V>` (`None` deletes the key).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

use eddy_state::StoreKind;

use crate::dsl::kstream::{or_default, KStream};
use crate::dsl::options::Materialized;
use crate::dsl::streams_builder::Dsl;
use crate::dsl::{Data, StoredData};
use crate::operators::passthrough::PassThrough;
use crate::operators::table_filter::TableFilter;
use crate::operators::table_map_values::TableMapValues;
use crate::operators::table_materialize::TableMaterialize;
use crate::operators::table_table_join::{RightSide, TableJoiner, TableTableJoin};
use crate::serdes::{SerdeRef, Serdes};

/// A table: each update of a key replaces its value.
pub struct KTable<K, V> {
    pub(crate) dsl: Dsl,
    pub(crate) node: String,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    /// The key-value store holding the table's current rows, once there is one.
    pub(crate) store: RefCell<Option<String>>,
    /// Nodes that forward this table's updates after they reached `store`.
    pub(crate) materialized_node: RefCell<Option<String>>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        Self {
            dsl: self.dsl.clone(),
            node: self.node.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            store: RefCell::new(self.store.borrow().clone()),
            materialized_node: RefCell::new(self.materialized_node.borrow().clone()),
        }
    }
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KTable({})", self.node)
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn new(
        dsl: Dsl,
        node: String,
        key_serde: Option<SerdeRef<K>>,
        value_serde: Option<SerdeRef<V>>,
        store: Option<String>,
    ) -> Self {
        Self {
            dsl,
            node,
            key_serde,
            value_serde,
            materialized_node: RefCell::new(store.is_some().then(String::new)),
            store: RefCell::new(store),
        }
    }

    /// The name of the store holding this table, if it is materialized.
    pub fn queryable_store_name(&self) -> Option<String> {
        self.store.borrow().clone()
    }

    /// Keeps the rows `predicate` accepts; a row that stops passing becomes a delete.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter_impl(predicate, false)
    }

    /// Keeps the rows `predicate` rejects.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter_impl(predicate, true)
    }

    fn filter_impl(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
        negate: bool,
    ) -> Self {
        let predicate: crate::operators::filter::Predicate<K, V> = Arc::new(predicate);
        let node = self.dsl.borrow_mut().processor(
            "KTABLE-FILTER",
            move || TableFilter {
                predicate: Arc::clone(&predicate),
                negate,
            },
            &[&self.node],
        );
        KTable::new(
            self.dsl.clone(),
            node,
            self.key_serde.clone(),
            self.value_serde.clone(),
            None,
        )
    }

    /// Transforms each row's value.
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        let f: Arc<dyn Fn(&K, V) -> V2 + Send + Sync> = Arc::new(f);
        let node = self.dsl.borrow_mut().processor(
            "KTABLE-MAPVALUES",
            move || TableMapValues { f: Arc::clone(&f) },
            &[&self.node],
        );
        KTable::new(self.dsl.clone(), node, self.key_serde.clone(), None, None)
    }

    /// The table's updates as a stream; `None` values are deletes.
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let node = self.dsl.borrow_mut().processor(
            "KTABLE-TOSTREAM",
            || PassThrough::<K, Option<V>>(PhantomData),
            &[&self.node],
        );
        KStream::new(
            self.dsl.clone(),
            node,
            self.key_serde.clone(),
            self.value_serde.clone().map(Serdes::nullable),
            false,
        )
    }
}

impl<K: StoredData, V: StoredData> KTable<K, V> {
    /// This table with its rows kept in a store named `materialized` (for queries or joins).
    pub fn materialize(&self, materialized: Materialized<K, V>) -> Self {
        let key = or_default(materialized.key.clone().or_else(|| self.key_serde.clone()));
        let value = or_default(
            materialized
                .value
                .clone()
                .or_else(|| self.value_serde.clone()),
        );
        let mut st = self.dsl.borrow_mut();
        let store_name = materialized
            .name
            .clone()
            .unwrap_or_else(|| st.name("KTABLE-STATE-STORE"));
        let (sn, caching) = (store_name.clone(), materialized.caching);
        let node = st.processor(
            "KTABLE-MATERIALIZE",
            move || TableMaterialize::<K, V>::new(sn.clone(), caching),
            &[&self.node],
        );
        let mat = Materialized {
            name: Some(store_name.clone()),
            ..materialized
        };
        st.store(
            &mat,
            "",
            StoreKind::KeyValue,
            Arc::clone(&key),
            Arc::clone(&value),
            &[&node],
        );
        drop(st);
        KTable::new(
            self.dsl.clone(),
            node,
            Some(key),
            Some(value),
            Some(store_name),
        )
    }

    /// The store a join can look this table up in, materializing (uncached, so that a join sees
    /// each update as it happens) when there is none yet.
    pub(crate) fn ensure_store(&self) -> String {
        if let Some(s) = self.store.borrow().clone() {
            return s;
        }
        let m = self.materialize(Materialized::new().without_caching());
        let name = m.queryable_store_name().unwrap_or_default();
        *self.store.borrow_mut() = Some(name.clone());
        *self.materialized_node.borrow_mut() = Some(m.node.clone());
        name
    }

    /// The node whose updates follow the store's writes.
    fn updates_node(&self) -> String {
        match self.materialized_node.borrow().as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => self.node.clone(),
        }
    }

    /// Inner table–table join: a row for each key present in both tables.
    pub fn join<V2: StoredData, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, &V2) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        let joiner: TableJoiner<V, V2, VR> = Arc::new(move |l, r| r.map(|r| joiner(l, r)));
        self.table_join(other, false, joiner)
    }

    /// Left table–table join: a row for each key of this table, with the other's row or `None`.
    pub fn left_join<V2: StoredData, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, true, Arc::new(move |l, r| Some(joiner(l, r))))
    }

    fn table_join<V2: StoredData, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        left_join: bool,
        joiner: TableJoiner<V, V2, VR>,
    ) -> KTable<K, VR> {
        let left_store = self.ensure_store();
        let right_store = other.ensure_store();
        let (left_in, right_in) = (self.updates_node(), other.updates_node());
        let mut st = self.dsl.borrow_mut();
        let (j1, rs) = (Arc::clone(&joiner), right_store.clone());
        let left = st.processor(
            "KTABLE-JOINTHIS",
            move || TableTableJoin::<K, V, V2, VR> {
                other_store: rs.clone(),
                left_join,
                joiner: Arc::clone(&j1),
                left: None,
                right: None,
            },
            &[&left_in],
        );
        let ls = left_store.clone();
        let right = st.processor(
            "KTABLE-JOINOTHER",
            move || {
                RightSide::<K, V, V2, VR>(TableTableJoin {
                    other_store: ls.clone(),
                    left_join,
                    joiner: Arc::clone(&joiner),
                    left: None,
                    right: None,
                })
            },
            &[&right_in],
        );
        let merge = st.processor(
            "KTABLE-MERGE",
            || PassThrough::<K, Option<VR>>(PhantomData),
            &[&left, &right],
        );
        let r1 = st
            .topo
            .connect_processor_and_store(&left, &right_store)
            .map(|_| ());
        st.record(r1);
        let r2 = st
            .topo
            .connect_processor_and_store(&right, &left_store)
            .map(|_| ());
        st.record(r2);
        drop(st);
        KTable::new(self.dsl.clone(), merge, self.key_serde.clone(), None, None)
    }
}
