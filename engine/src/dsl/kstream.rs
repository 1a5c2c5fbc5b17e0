//! `KStream`: an unbounded stream of records, and its stateless operations.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::dsl::grouped::KGroupedStream;
use crate::dsl::ktable::KTable;
use crate::dsl::options::{Grouped, Materialized, Produced};
use crate::dsl::streams_builder::Dsl;
use crate::dsl::{Data, StoredData};
use crate::error::EngineError;
use crate::operators::branch::Branch;
use crate::operators::filter::{Filter, Predicate};
use crate::operators::flat_map::FlatMap;
use crate::operators::map::Map;
use crate::operators::passthrough::PassThrough;
use crate::operators::peek::Peek;
use crate::operators::stream_table_join::StreamTableJoin;
use crate::processor::Processor;
use crate::serdes::{SerdeRef, Serdes};

/// A stream of `(K, V)` records. Operations add processors to the topology and return new
/// streams; the stream carries its serdes where they are still known, for sinks and stores.
pub struct KStream<K, V> {
    pub(crate) dsl: Dsl,
    pub(crate) node: String,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    /// The key changed since the source: grouping or joining must repartition first.
    pub(crate) needs_repartition: bool,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        Self {
            dsl: self.dsl.clone(),
            node: self.node.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            needs_repartition: self.needs_repartition,
        }
    }
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KStream({})", self.node)
    }
}

/// The given serde, or Eddy's default for the type ([`Serdes::default_for`]).
pub(crate) fn or_default<T: StoredData>(serde: Option<SerdeRef<T>>) -> SerdeRef<T> {
    serde.unwrap_or_else(Serdes::default_for::<T>)
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(
        dsl: Dsl,
        node: String,
        key_serde: Option<SerdeRef<K>>,
        value_serde: Option<SerdeRef<V>>,
        needs_repartition: bool,
    ) -> Self {
        Self {
            dsl,
            node,
            key_serde,
            value_serde,
            needs_repartition,
        }
    }

    fn derive<K2: Data, V2: Data>(
        &self,
        node: String,
        key_serde: Option<SerdeRef<K2>>,
        value_serde: Option<SerdeRef<V2>>,
        needs_repartition: bool,
    ) -> KStream<K2, V2> {
        KStream::new(
            self.dsl.clone(),
            node,
            key_serde,
            value_serde,
            needs_repartition,
        )
    }

    /// The name of the node this stream comes out of.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// Keeps the records for which `predicate` is true.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter_impl(Arc::new(predicate), false, "KSTREAM-FILTER")
    }

    /// Keeps the records for which `predicate` is false.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter_impl(Arc::new(predicate), true, "KSTREAM-FILTER")
    }

    fn filter_impl(&self, predicate: Predicate<K, V>, negate: bool, prefix: &str) -> Self {
        let node = self.dsl.borrow_mut().processor(
            prefix,
            move || Filter {
                predicate: Arc::clone(&predicate),
                negate,
            },
            &[&self.node],
        );
        self.derive(
            node,
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.needs_repartition,
        )
    }

    /// A new key and value for each record (marks the stream for repartitioning).
    pub fn map<K2: Data, V2: Data>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let f = Arc::new(f);
        let node = self.dsl.borrow_mut().processor(
            "KSTREAM-MAP",
            move || Map {
                f: f.clone() as crate::operators::map::MapFn<K, V, K2, V2>,
            },
            &[&self.node],
        );
        self.derive(node, None, None, true)
    }

    /// A new value for each record; the key, and so the partitioning, stays.
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.map_values_with_key(move |_, v| f(v))
    }

    /// A new value computed from key and value.
    pub fn map_values_with_key<V2: Data>(
        &self,
        f: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        let f = Arc::new(f);
        let node = self.dsl.borrow_mut().processor(
            "KSTREAM-MAPVALUES",
            move || {
                let f = Arc::clone(&f);
                Map {
                    f: Arc::new(move |k: K, v: V| {
                        let v2 = f(&k, v);
                        (k, v2)
                    }) as crate::operators::map::MapFn<K, V, K, V2>,
                }
            },
            &[&self.node],
        );
        self.derive(node, self.key_serde.clone(), None, self.needs_repartition)
    }

    /// A new key for each record (marks the stream for repartitioning).
    pub fn select_key<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        let f = Arc::new(f);
        let node = self.dsl.borrow_mut().processor(
            "KSTREAM-KEY-SELECT",
            move || {
                let f = Arc::clone(&f);
                Map {
                    f: Arc::new(move |k: K, v: V| (f(&k, &v), v))
                        as crate::operators::map::MapFn<K, V, K2, V>,
                }
            },
            &[&self.node],
        );
        self.derive(node, None, self.value_serde.clone(), true)
    }

    /// Zero or more records for each record (marks the stream for repartitioning).
    pub fn flat_map<K2: Data, V2: Data, I>(
        &self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        let f = Arc::new(f);
        let node = self.dsl.borrow_mut().processor(
            "KSTREAM-FLATMAP",
            move || {
                let f = Arc::clone(&f);
                FlatMap {
                    f: Arc::new(move |k: K, v: V| f(k, v).into_iter().collect())
                        as crate::operators::flat_map::FlatMapFn<K, V, K2, V2>,
                }
            },
            &[&self.node],
        );
        self.derive(node, None, None, true)
    }

    /// Zero or more values for each record, under the same key.
    pub fn flat_map_values<V2: Data, I>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        let f = Arc::new(f);
        let node = self.dsl.borrow_mut().processor(
            "KSTREAM-FLATMAPVALUES",
            move || {
                let f = Arc::clone(&f);
                FlatMap {
                    f: Arc::new(move |k: K, v: V| {
                        f(v).into_iter().map(|v2| (k.clone(), v2)).collect()
                    }) as crate::operators::flat_map::FlatMapFn<K, V, K, V2>,
                }
            },
            &[&self.node],
        );
        self.derive(node, self.key_serde.clone(), None, self.needs_repartition)
    }

    /// Calls `f` on each record and passes it on unchanged.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> Self {
        let f = Arc::new(f);
        let node = self.dsl.borrow_mut().processor(
            "KSTREAM-PEEK",
            move || Peek {
                f: f.clone() as Arc<dyn Fn(&K, &V) + Send + Sync>,
            },
            &[&self.node],
        );
        self.derive(
            node,
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.needs_repartition,
        )
    }

    /// The records of both streams, as one stream.
    pub fn merge(&self, other: &KStream<K, V>) -> Self {
        let node = self.dsl.borrow_mut().processor(
            "KSTREAM-MERGE",
            || PassThrough::<K, V>(PhantomData),
            &[&self.node, &other.node],
        );
        self.derive(
            node,
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.needs_repartition || other.needs_repartition,
        )
    }

    /// Splits the stream: each record goes to the first branch whose predicate accepts it.
    pub fn split(&self) -> BranchedKStream<K, V> {
        BranchedKStream {
            stream: self.clone(),
            branches: Vec::new(),
        }
    }

    /// Writes every record to `topic`, with the serdes of `produced` or else the stream's own.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let mut st = self.dsl.borrow_mut();
        let (Some(key), Some(value)) = (
            produced.key.or_else(|| self.key_serde.clone()),
            produced.value.or_else(|| self.value_serde.clone()),
        ) else {
            st.errors.push(EngineError::Topology(format!(
                "to(`{topic}`): the stream's serdes are unknown after a map; give Produced::with(key, value)"
            )));
            return;
        };
        let name = st.name("KSTREAM-SINK");
        let r = st
            .topo
            .add_sink(&name, topic, key, value, &[&self.node])
            .map(|_| ());
        st.record(r);
    }

    /// Like [`KStream::process`] for a processor that keeps each record's key (Kafka Streams'
    /// `processValues`): the stream keeps its partitioning, so grouping or joining after it does
    /// not repartition. A processor that changes keys here breaks co-partitioning.
    pub fn process_values<P, V2: Data>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<K, V2>
    where
        P: Processor<K, V, K, V2>,
    {
        let node = self.processor_with_stores("KSTREAM-PROCESSVALUES", supplier, stores);
        self.derive(node, self.key_serde.clone(), None, self.needs_repartition)
    }

    fn processor_with_stores<P, K2: Data, V2: Data>(
        &self,
        prefix: &str,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> String
    where
        P: Processor<K, V, K2, V2>,
    {
        let mut st = self.dsl.borrow_mut();
        let node = st.processor(prefix, supplier, &[&self.node]);
        for s in stores {
            let r = st.topo.connect_processor_and_store(&node, s).map(|_| ());
            st.record(r);
        }
        node
    }

    /// Runs a [`Processor`] made by `supplier` for each task, connected to `stores`.
    pub fn process<P, K2: Data, V2: Data>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<K2, V2>
    where
        P: Processor<K, V, K2, V2>,
    {
        let node = self.processor_with_stores("KSTREAM-PROCESSOR", supplier, stores);
        self.derive(node, None, None, true)
    }
}

impl<K: StoredData, V: StoredData> KStream<K, V> {
    /// Sends the stream through the topic `<application.id>-<name>-repartition`, so that records
    /// are partitioned by their current key.
    pub fn repartition(&self, name: &str) -> Self {
        self.repartition_with(
            name,
            or_default(self.key_serde.clone()),
            or_default(self.value_serde.clone()),
        )
    }

    /// [`KStream::repartition`] with the serdes of the repartition topic.
    pub fn repartition_with(&self, name: &str, key: SerdeRef<K>, value: SerdeRef<V>) -> Self {
        let mut st = self.dsl.borrow_mut();
        let topic = crate::topology::internal_topics::repartition(name);
        st.topo.add_repartition_topic(&topic);
        let sink = st.name("KSTREAM-SINK");
        let r = st
            .topo
            .add_sink(
                &sink,
                &topic,
                Arc::clone(&key),
                Arc::clone(&value),
                &[&self.node],
            )
            .map(|_| ());
        st.record(r);
        let source = st.name("KSTREAM-SOURCE");
        let r = st
            .topo
            .add_source(&source, &[&topic], Arc::clone(&key), Arc::clone(&value))
            .map(|_| ());
        st.record(r);
        drop(st);
        self.derive(source, Some(key), Some(value), false)
    }

    /// Repartitions if the key changed since the source.
    pub(crate) fn repartitioned_if_needed(&self, name_hint: Option<&str>) -> Self {
        if !self.needs_repartition {
            return self.clone();
        }
        let name = match name_hint {
            Some(n) => n.to_string(),
            None => self.dsl.borrow_mut().name("KSTREAM-REPARTITION"),
        };
        self.repartition(&name)
    }

    /// Groups by the current key, for aggregation (repartitioning first if the key changed).
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        let key = or_default(grouped.key.or_else(|| self.key_serde.clone()));
        let value = or_default(grouped.value.or_else(|| self.value_serde.clone()));
        let stream = if self.needs_repartition {
            let name = grouped
                .name
                .clone()
                .unwrap_or_else(|| self.dsl.borrow_mut().name("KSTREAM-AGGREGATE-STATE-STORE"));
            self.repartition_with(&name, Arc::clone(&key), Arc::clone(&value))
        } else {
            self.clone()
        };
        KGroupedStream::new(stream, key, value)
    }

    /// Groups by a new key computed from each record (always repartitions).
    pub fn group_by<K2: StoredData>(
        &self,
        key_fn: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        let mut keyed = self.select_key(key_fn);
        keyed.value_serde = grouped.value.clone().or_else(|| self.value_serde.clone());
        keyed.group_by_key(grouped)
    }

    /// The stream as a table: the latest value per key.
    pub fn to_table(&self, materialized: Materialized<K, V>) -> KTable<K, V> {
        let stream = self.repartitioned_if_needed(None);
        let node = self.dsl.borrow_mut().processor(
            "KSTREAM-TOTABLE",
            || Map {
                f: Arc::new(|k: K, v: V| (k, Some(v)))
                    as crate::operators::map::MapFn<K, V, K, Option<V>>,
            },
            &[&stream.node],
        );
        KTable::new(
            self.dsl.clone(),
            node,
            stream.key_serde.clone(),
            stream.value_serde.clone(),
            None,
        )
        .materialize(materialized)
    }

    /// Inner stream–table join: each record joins the table's current row for its key; records
    /// with no row are dropped.
    pub fn join_table<VT: StoredData, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let joiner = Arc::new(move |_: &K, v: V, t: Option<&VT>| t.map(|t| joiner(&v, t)));
        self.stream_table_join(table, false, joiner)
    }

    /// Left stream–table join: records with no row join with `None`.
    pub fn left_join_table<VT: StoredData, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let joiner = Arc::new(move |_: &K, v: V, t: Option<&VT>| Some(joiner(&v, t)));
        self.stream_table_join(table, true, joiner)
    }

    #[allow(clippy::type_complexity)]
    fn stream_table_join<VT: StoredData, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        left: bool,
        joiner: Arc<dyn Fn(&K, V, Option<&VT>) -> Option<VR> + Send + Sync>,
    ) -> KStream<K, VR> {
        let stream = self.repartitioned_if_needed(None);
        let table_store = table.ensure_store();
        let mut st = self.dsl.borrow_mut();
        let ts = table_store.clone();
        let node = st.processor(
            "KSTREAM-JOIN",
            move || StreamTableJoin {
                table_store: ts.clone(),
                left,
                joiner: Arc::clone(&joiner),
                store: None,
            },
            &[&stream.node],
        );
        let r = st
            .topo
            .connect_processor_and_store(&node, &table_store)
            .map(|_| ());
        st.record(r);
        drop(st);
        self.derive(node, stream.key_serde.clone(), None, false)
    }
}

/// The branches of a [`KStream::split`].
pub struct BranchedKStream<K, V> {
    stream: KStream<K, V>,
    branches: Vec<(String, Option<Predicate<K, V>>)>,
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    /// A branch called `name` taking the records `predicate` accepts (and no earlier branch did).
    pub fn branch(
        mut self,
        name: &str,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.branches
            .push((name.to_string(), Some(Arc::new(predicate))));
        self
    }

    /// A last branch taking every record no other branch took.
    pub fn default_branch(mut self, name: &str) -> Self {
        self.branches.push((name.to_string(), None));
        self
    }

    /// The branch streams, by name, in the order they were declared.
    pub fn build(self) -> Vec<(String, KStream<K, V>)> {
        let mut st = self.stream.dsl.borrow_mut();
        let split = st.name("KSTREAM-BRANCH");
        let children: Vec<(String, String)> = self
            .branches
            .iter()
            .map(|(name, _)| (name.clone(), format!("{split}-{name}")))
            .collect();
        let table: Vec<(String, Option<Predicate<K, V>>)> = self
            .branches
            .iter()
            .zip(&children)
            .map(|((_, p), (_, node))| (node.clone(), p.clone()))
            .collect();
        let r = st
            .topo
            .add_processor(
                &split,
                move || Branch {
                    branches: table.clone(),
                },
                &[&self.stream.node],
            )
            .map(|_| ());
        st.record(r);
        let mut out = Vec::new();
        for (name, node) in children {
            let r = st
                .topo
                .add_processor(&node, || PassThrough::<K, V>(PhantomData), &[&split])
                .map(|_| ());
            st.record(r);
            out.push((
                name,
                KStream::new(
                    self.stream.dsl.clone(),
                    node,
                    self.stream.key_serde.clone(),
                    self.stream.value_serde.clone(),
                    self.stream.needs_repartition,
                ),
            ));
        }
        out
    }
}
