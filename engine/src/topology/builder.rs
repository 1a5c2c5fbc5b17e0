//! The low-level topology builder (Kafka Streams' `Topology.addSource/addProcessor/...`).

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use eddy_state::{StoreKind, StoreSpec};

use crate::error::{EngineError, Result};
use crate::operators::sink::SinkNode;
use crate::operators::source::SourceNode;
use crate::processor::node::{Node, ProcessorNode};
use crate::processor::{Processor, StoreSerdes};
use crate::serdes::SerdeRef;
use crate::time::TimestampExtractor;
use crate::topology::graph::{NodeDef, NodeKind, StoreDef, SubTopology, Topology};

/// Builds a [`Topology`] node by node. The DSL ([`crate::StreamsBuilder`]) builds on it; use it
/// directly for hand-written processors.
///
/// ```
/// use eddy_engine::{Processor, ProcessorContext, Record, Result, Serdes, TopologyBuilder};
///
/// struct Upper;
/// impl Processor<String, String, String, String> for Upper {
///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, String>) -> Result<()> {
///         let v = r.value.to_uppercase();
///         ctx.forward(r.with_value(v))
///     }
/// }
///
/// let mut b = TopologyBuilder::new();
/// b.add_source("in", &["words"], Serdes::string(), Serdes::string()).unwrap();
/// b.add_processor("upper", || Upper, &["in"]).unwrap();
/// b.add_sink("out", "shouts", Serdes::string(), Serdes::string(), &["upper"]).unwrap();
/// let topology = b.build().unwrap();
/// assert_eq!(topology.subtopologies().len(), 1);
/// ```
#[derive(Default, Clone)]
pub struct TopologyBuilder {
    nodes: Vec<NodeDef>,
    stores: BTreeMap<String, StoreDef>,
    repartition_topics: BTreeSet<String>,
}

impl std::fmt::Debug for TopologyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyBuilder")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn types<K: 'static, V: 'static>() -> (TypeId, TypeId, &'static str) {
    (
        TypeId::of::<K>(),
        TypeId::of::<V>(),
        std::any::type_name::<(K, V)>(),
    )
}

impl TopologyBuilder {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_new(&self, name: &str) -> Result<()> {
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(EngineError::Topology(format!(
                "node `{name}` is defined twice"
            )));
        }
        Ok(())
    }

    fn push(&mut self, def: NodeDef) -> Result<&mut Self> {
        self.check_new(&def.name)?;
        for p in &def.parents {
            if !self.nodes.iter().any(|n| &n.name == p) {
                return Err(EngineError::Topology(format!(
                    "`{}` names parent `{p}`, which is not defined (yet)",
                    def.name
                )));
            }
        }
        self.nodes.push(def);
        Ok(self)
    }

    /// A source reading `topics` with the record timestamp as event time.
    pub fn add_source<K, V>(
        &mut self,
        name: &str,
        topics: &[&str],
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) -> Result<&mut Self>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        self.add_source_with(name, topics, key, value, None)
    }

    /// A source with its own timestamp extractor.
    pub fn add_source_with<K, V>(
        &mut self,
        name: &str,
        topics: &[&str],
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        extractor: Option<Arc<dyn TimestampExtractor>>,
    ) -> Result<&mut Self>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        if topics.is_empty() {
            return Err(EngineError::Topology(format!(
                "source `{name}` reads no topic"
            )));
        }
        for t in topics {
            if self.nodes.iter().any(|n| matches!(&n.kind, NodeKind::Source { topics, .. } if topics.iter().any(|x| x == t))) {
                return Err(EngineError::Topology(format!("topic `{t}` is read by two sources")));
            }
        }
        let factory = move || -> Box<dyn Node> {
            Box::new(SourceNode {
                key: Arc::clone(&key),
                value: Arc::clone(&value),
            })
        };
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Source {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                extractor,
            },
            parents: vec![],
            stores: vec![],
            factory: Arc::new(factory),
            input: None,
            output: Some(types::<K, V>()),
        })
    }

    /// A processor made by `supplier` for each task, fed by `parents`.
    pub fn add_processor<P, KIn, VIn, KOut, VOut>(
        &mut self,
        name: &str,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        P: Processor<KIn, VIn, KOut, VOut>,
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + Send + 'static,
        VOut: Clone + Send + 'static,
    {
        if parents.is_empty() {
            return Err(EngineError::Topology(format!(
                "processor `{name}` has no parent"
            )));
        }
        let factory = move || -> Box<dyn Node> {
            Box::new(ProcessorNode::<P, KIn, VIn, KOut, VOut>::new(supplier()))
        };
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Processor,
            parents: parents.iter().map(|p| p.to_string()).collect(),
            stores: vec![],
            factory: Arc::new(factory),
            input: Some(types::<KIn, VIn>()),
            output: Some(types::<KOut, VOut>()),
        })
    }

    /// A sink writing to `topic`.
    pub fn add_sink<K, V>(
        &mut self,
        name: &str,
        topic: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        if parents.is_empty() {
            return Err(EngineError::Topology(format!(
                "sink `{name}` has no parent"
            )));
        }
        let internal = self.repartition_topics.contains(topic);
        let topic_name = topic.to_string();
        let factory = move || -> Box<dyn Node> {
            Box::new(SinkNode {
                topic: topic_name.clone(),
                internal,
                key: Arc::clone(&key),
                value: Arc::clone(&value),
            })
        };
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Sink {
                topic: topic.to_string(),
            },
            parents: parents.iter().map(|p| p.to_string()).collect(),
            stores: vec![],
            factory: Arc::new(factory),
            input: Some(types::<K, V>()),
            output: None,
        })
    }

    /// Declares `topic` a repartition topic: named `<application.id>-<topic>` on the broker and
    /// created by Eddy. Call before adding its sink and source.
    pub fn add_repartition_topic(&mut self, topic: &str) -> &mut Self {
        self.repartition_topics.insert(topic.to_string());
        self
    }

    /// Adds a store with typed serdes and connects it to `processors`.
    pub fn add_state_store<K, V>(
        &mut self,
        spec: StoreSpec,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        processors: &[&str],
    ) -> Result<&mut Self>
    where
        K: 'static,
        V: 'static,
    {
        if self.stores.contains_key(&spec.name) {
            return Err(EngineError::Topology(format!(
                "store `{}` is defined twice",
                spec.name
            )));
        }
        if let StoreKind::Window { retention_ms, .. } | StoreKind::Session { retention_ms } =
            spec.kind
        {
            if retention_ms <= 0 {
                return Err(EngineError::Topology(format!(
                    "store `{}` needs a positive retention",
                    spec.name
                )));
            }
        }
        let name = spec.name.clone();
        self.stores.insert(
            name.clone(),
            StoreDef {
                spec,
                serdes: Arc::new(StoreSerdes { key, value }),
                json: None,
                window_size_ms: None,
                keyed_by_record_key: false,
            },
        );
        for p in processors {
            self.connect_processor_and_store(p, &name)?;
        }
        Ok(self)
    }

    /// Lets SQL read store `name` as JSON (its key and value types can be serialized); a DSL
    /// store is `keyed_by_record_key` (`StoreDef`).
    pub(crate) fn store_as_json<K, V>(
        &mut self,
        name: &str,
        key: &SerdeRef<K>,
        value: &SerdeRef<V>,
        keyed_by_record_key: bool,
    ) where
        K: serde::Serialize + serde::de::DeserializeOwned + 'static,
        V: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        if let Some(def) = self.stores.get_mut(name) {
            def.json = Some(crate::query::StoreJson::new(key, value));
            def.keyed_by_record_key = keyed_by_record_key;
        }
    }

    /// SQL shows store `name`'s values with the columns `T` declares (see
    /// [`crate::StreamsBuilder::declare_value_columns`]).
    pub(crate) fn store_value_columns<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<()> {
        let Some(json) = self.stores.get_mut(name).and_then(|d| d.json.as_mut()) else {
            return Err(EngineError::Topology(format!(
                "declare_value_columns: no store `{name}` (add it first)"
            )));
        };
        if json.declare_value_columns::<T>() {
            Ok(())
        } else {
            Err(EngineError::Topology(format!(
                "declare_value_columns for `{name}`: the type's format cannot be traced either \
                 (a map at its top, an untagged enum, a hand-written Deserialize)"
            )))
        }
    }

    /// Store `name` holds windows of `size_ms` (so SQL shows where each ends).
    pub(crate) fn store_window_size(&mut self, name: &str, size_ms: i64) {
        if let Some(def) = self.stores.get_mut(name) {
            def.window_size_ms = Some(size_ms);
        }
    }

    /// Gives `processor` access to `store`.
    pub fn connect_processor_and_store(
        &mut self,
        processor: &str,
        store: &str,
    ) -> Result<&mut Self> {
        if !self.stores.contains_key(store) {
            return Err(EngineError::Topology(format!("no store named `{store}`")));
        }
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == processor)
            .ok_or_else(|| EngineError::Topology(format!("no processor named `{processor}`")))?;
        if !node.stores.iter().any(|s| s == store) {
            node.stores.push(store.to_string());
        }
        Ok(self)
    }

    /// Whether a node of this name exists.
    pub fn has_node(&self, name: &str) -> bool {
        self.nodes.iter().any(|n| n.name == name)
    }

    /// Checks the graph and cuts it into sub-topologies.
    pub fn build(self) -> Result<Topology> {
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        // Every edge must carry the types its child takes.
        for node in &self.nodes {
            for p in &node.parents {
                let parent = &self.nodes[index[p.as_str()]];
                if let (Some(out), Some(inp)) = (&parent.output, &node.input) {
                    if (out.0, out.1) != (inp.0, inp.1) {
                        return Err(EngineError::Topology(format!(
                            "`{p}` gives {} but `{}` takes {}",
                            out.2, node.name, inp.2
                        )));
                    }
                }
                if parent.output.is_none() {
                    return Err(EngineError::Topology(format!(
                        "`{}` cannot follow sink `{p}`",
                        node.name
                    )));
                }
            }
        }
        for (name, _) in self.stores.iter() {
            if !self.nodes.iter().any(|n| n.stores.contains(name)) {
                return Err(EngineError::Topology(format!(
                    "store `{name}` is connected to no processor"
                )));
            }
        }
        // Union-find: parents and shared stores join nodes; topics do not.
        let mut parent: Vec<usize> = (0..self.nodes.len()).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            let mut c = x;
            while p[c] != r {
                let next = p[c];
                p[c] = r;
                c = next;
            }
            r
        }
        let union = |p: &mut Vec<usize>, a: usize, b: usize| {
            let (ra, rb) = (find(p, a), find(p, b));
            if ra != rb {
                p[ra.max(rb)] = ra.min(rb);
            }
        };
        let mut store_owner: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for p in &node.parents {
                union(&mut parent, i, index[p.as_str()]);
            }
            for s in &node.stores {
                match store_owner.get(s.as_str()) {
                    Some(&o) => union(&mut parent, i, o),
                    None => {
                        store_owner.insert(s.as_str(), i);
                    }
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..self.nodes.len() {
            let root = find(&mut parent, i);
            groups.entry(root).or_default().push(i);
        }
        let mut subtopologies = Vec::new();
        for (id, (_, nodes)) in groups.into_iter().enumerate() {
            let mut source_topics = Vec::new();
            let mut sink_topics = Vec::new();
            let mut stores = Vec::new();
            for &i in &nodes {
                match &self.nodes[i].kind {
                    NodeKind::Source { topics, .. } => source_topics.extend(topics.iter().cloned()),
                    NodeKind::Sink { topic } => sink_topics.push(topic.clone()),
                    NodeKind::Processor => {}
                }
                stores.extend(self.nodes[i].stores.iter().cloned());
            }
            if source_topics.is_empty() {
                return Err(EngineError::Topology(format!(
                    "nodes {:?} are reached from no source",
                    nodes
                        .iter()
                        .map(|&i| &self.nodes[i].name)
                        .collect::<Vec<_>>()
                )));
            }
            stores.sort();
            stores.dedup();
            sink_topics.sort();
            sink_topics.dedup();
            subtopologies.push(SubTopology {
                id,
                nodes,
                source_topics,
                sink_topics,
                stores,
            });
        }
        Ok(Topology {
            nodes: self.nodes,
            stores: self.stores,
            subtopologies,
            repartition_topics: self.repartition_topics,
        })
    }
}
