//! `StreamsBuilder`: where a DSL topology starts (streams and tables from topics) and ends
//! (`build()`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use eddy_state::{StoreKind, StoreSpec};

use crate::dsl::kstream::KStream;
use crate::dsl::ktable::KTable;
use crate::dsl::options::{Consumed, Materialized};
use crate::dsl::{Data, StoredData};
use crate::error::{EngineError, Result};

use crate::processor::Processor;
use crate::serdes::{SerdeRef, Serdes};
use crate::topology::{Topology, TopologyBuilder};

/// The builder state shared by every stream and table of one topology.
pub(crate) struct DslState {
    pub topo: TopologyBuilder,
    counter: usize,
    /// Errors found while building; `build()` reports the first.
    pub errors: Vec<EngineError>,
}

pub(crate) type Dsl = Rc<RefCell<DslState>>;

impl DslState {
    /// A fresh node name in Kafka Streams' style, e.g. `KSTREAM-FILTER-0000000003`.
    pub fn name(&mut self, prefix: &str) -> String {
        let n = self.counter;
        self.counter += 1;
        format!("{prefix}-{n:010}")
    }

    pub fn record<T>(&mut self, r: Result<T>) {
        if let Err(e) = r {
            self.errors.push(e);
        }
    }

    /// Adds a processor named `prefix-N` and returns its name.
    pub fn processor<P, KIn, VIn, KOut, VOut>(
        &mut self,
        prefix: &str,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        parents: &[&str],
    ) -> String
    where
        P: Processor<KIn, VIn, KOut, VOut>,
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + Send + 'static,
        VOut: Clone + Send + 'static,
    {
        let name = self.name(prefix);
        let r = self
            .topo
            .add_processor(&name, supplier, parents)
            .map(|_| ());
        self.record(r);
        name
    }

    /// Adds the progress store of an emit-on-close aggregation over `window_store`, persisted and
    /// logged as that store is.
    pub fn emit_progress_store<K, V>(
        &mut self,
        window_store: &str,
        materialized: &Materialized<K, V>,
        processor: &str,
    ) {
        let progress: Materialized<String, i64> = Materialized {
            name: Some(crate::operators::emit_progress::progress_store_name(
                window_store,
            )),
            persistent: materialized.persistent,
            logging: materialized.logging,
            ..Materialized::default()
        };
        self.store(
            &progress,
            "",
            StoreKind::KeyValue,
            Serdes::string(),
            Serdes::i64(),
            &[processor],
        );
    }

    /// Adds a store of `kind` from `materialized` (or an internal name) for `processors`.
    pub fn store<K, V>(
        &mut self,
        materialized: &Materialized<K, V>,
        internal_prefix: &str,
        kind: StoreKind,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        processors: &[&str],
    ) -> String
    where
        K: serde::Serialize + serde::de::DeserializeOwned + 'static,
        V: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        let name = materialized
            .name
            .clone()
            .unwrap_or_else(|| self.name(internal_prefix));
        let spec = StoreSpec {
            name: name.clone(),
            kind,
            persistent: materialized.persistent,
            caching: materialized.caching,
            logging: materialized.logging,
        };
        let r = self
            .topo
            .add_state_store(spec, Arc::clone(&key), Arc::clone(&value), processors)
            .map(|_| ());
        self.record(r);
        self.topo.store_as_json(&name, &key, &value, true);
        name
    }
}

/// An aggregation into a key-value store as a table: the node `make(store, caching)` under
/// `parent`, its store from `materialized` (named `<store_prefix>-…` when unnamed), and the
/// table of its updates. Shared by grouped streams and grouped tables.
#[allow(clippy::too_many_arguments)]
pub(crate) fn key_value_aggregate<K, VA, KIn, VIn, P>(
    dsl: &Dsl,
    node_prefix: &str,
    store_prefix: &str,
    parent: &str,
    materialized: Materialized<K, VA>,
    key: SerdeRef<K>,
    value: SerdeRef<VA>,
    make: impl Fn(String, bool) -> P + Send + Sync + 'static,
) -> KTable<K, VA>
where
    K: StoredData,
    VA: StoredData,
    KIn: 'static,
    VIn: 'static,
    P: Processor<KIn, VIn, K, Option<VA>>,
{
    let mut st = dsl.borrow_mut();
    let store_name = materialized
        .name
        .clone()
        .unwrap_or_else(|| st.name(store_prefix));
    let (sn, caching) = (store_name.clone(), materialized.caching);
    let node = st.processor(node_prefix, move || make(sn.clone(), caching), &[parent]);
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
    KTable::new(dsl.clone(), node, Some(key), Some(value), Some(store_name))
}

/// Starts a DSL topology.
///
/// ```
/// use eddy_engine::{Consumed, Produced, Serdes, StreamsBuilder};
/// let builder = StreamsBuilder::new();
/// builder
///     .stream(&["words"], Consumed::with(Serdes::string(), Serdes::string()))
///     .filter(|_, word| word.len() > 3)
///     .map_values(|word| word.to_uppercase())
///     .to("long-words", Produced::with_value(Serdes::string()));
/// let topology = builder.build().unwrap();
/// assert!(topology.describe().contains("Sink"));
/// ```
pub struct StreamsBuilder {
    state: Dsl,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamsBuilder")
    }
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBuilder {
    /// An empty topology.
    pub fn new() -> Self {
        Self {
            state: Rc::new(RefCell::new(DslState {
                topo: TopologyBuilder::new(),
                counter: 0,
                errors: Vec::new(),
            })),
        }
    }

    /// A stream of the records of `topics`.
    pub fn stream<K: Data, V: Data>(
        &self,
        topics: &[&str],
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let mut st = self.state.borrow_mut();
        let name = st.name("KSTREAM-SOURCE");
        let r = st
            .topo
            .add_source_with(
                &name,
                topics,
                Arc::clone(&consumed.key),
                Arc::clone(&consumed.value),
                consumed.extractor,
            )
            .map(|_| ());
        st.record(r);
        drop(st);
        KStream::new(
            self.state.clone(),
            name,
            Some(consumed.key),
            Some(consumed.value),
            false,
        )
    }

    /// A table of the latest value per key of `topic` (a null value deletes the key),
    /// materialized in a store (named `<topic>-STATE-STORE` unless `materialized` names it).
    pub fn table<K: StoredData, V: StoredData>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let mut st = self.state.borrow_mut();
        let source = st.name("KTABLE-SOURCE");
        let nullable = Serdes::nullable(Arc::clone(&consumed.value));
        let r = st
            .topo
            .add_source_with(
                &source,
                &[topic],
                Arc::clone(&consumed.key),
                nullable,
                consumed.extractor,
            )
            .map(|_| ());
        st.record(r);
        drop(st);
        let changes = KTable::new(
            self.state.clone(),
            source,
            Some(consumed.key),
            Some(consumed.value),
            None,
        );
        let name = materialized
            .name
            .clone()
            .unwrap_or_else(|| format!("{topic}-STATE-STORE"));
        changes.materialize(Materialized {
            name: Some(name),
            ..materialized
        })
    }

    /// Adds a store that processors added with [`crate::KStream::process`] can name. Keys and
    /// values are typed by the serdes given here (and SQL reads them through the same serdes).
    pub fn add_state_store<K: StoredData, V: StoredData>(
        &self,
        spec: StoreSpec,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) {
        let mut st = self.state.borrow_mut();
        let name = spec.name.clone();
        let r = st
            .topo
            .add_state_store(spec, Arc::clone(&key), Arc::clone(&value), &[])
            .map(|_| ());
        st.record(r);
        st.topo.store_as_json(&name, &key, &value, false);
    }

    /// Gives SQL the columns of store `name`'s values as `T` declares them, for a value type
    /// whose own format cannot be traced (a hand-written `Deserialize`, a field of
    /// `serde_json::Value`): `T` is a plain mirror of the JSON the store's values write, so the
    /// table has its columns before the store has a row. A row that does not fit them sends the
    /// table back to inferring its columns from rows.
    ///
    /// ```
    /// use eddy_engine::{Serdes, StoreSpec, StreamsBuilder};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct EventColumns {
    ///     event_type: String,
    ///     time_ms: i64,
    /// }
    ///
    /// let b = StreamsBuilder::new();
    /// b.add_state_store(
    ///     StoreSpec::key_value("history"),
    ///     Serdes::string(),
    ///     Serdes::json::<Vec<serde_json::Value>>(),
    /// );
    /// b.declare_value_columns::<Vec<EventColumns>>("history");
    /// ```
    pub fn declare_value_columns<T: serde::de::DeserializeOwned>(&self, name: &str) {
        let mut st = self.state.borrow_mut();
        let r = st.topo.store_value_columns::<T>(name);
        st.record(r);
    }

    /// Checks the topology and builds it; the first error of any DSL call is returned here.
    pub fn build(&self) -> Result<Topology> {
        let mut state = self.state.borrow_mut();
        if let Some(e) = state.errors.drain(..).next() {
            return Err(e);
        }
        state.topo.clone().build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serdes;

    #[test]
    fn declared_value_columns_need_the_store_and_a_type_that_traces() {
        let b = StreamsBuilder::new();
        b.declare_value_columns::<i64>("missing");
        let error = b.build().unwrap_err().to_string();
        assert!(error.contains("no store `missing`"), "{error}");

        let b = StreamsBuilder::new();
        b.add_state_store(
            StoreSpec::key_value("history"),
            Serdes::string(),
            Serdes::json::<serde_json::Value>(),
        );
        b.declare_value_columns::<std::collections::HashMap<String, i64>>("history");
        let error = b.build().unwrap_err().to_string();
        assert!(error.contains("cannot be traced"), "{error}");
    }
}
