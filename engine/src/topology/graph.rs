//! The built topology: nodes in topological order, stores, sub-topologies and internal topics.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use eddy_state::StoreSpec;

use crate::processor::node::Node;
use crate::time::TimestampExtractor;

pub(crate) type NodeFactory = Arc<dyn Fn() -> Box<dyn Node> + Send + Sync>;

#[derive(Clone)]
pub(crate) enum NodeKind {
    Source {
        topics: Vec<String>,
        extractor: Option<Arc<dyn TimestampExtractor>>,
    },
    Processor,
    Sink {
        topic: String,
    },
}

#[derive(Clone)]
pub(crate) struct NodeDef {
    pub name: String,
    pub kind: NodeKind,
    pub parents: Vec<String>,
    pub stores: Vec<String>,
    pub factory: NodeFactory,
    /// Type names of the key and value the node takes and gives, checked edge by edge at build.
    pub input: Option<(std::any::TypeId, std::any::TypeId, &'static str)>,
    pub output: Option<(std::any::TypeId, std::any::TypeId, &'static str)>,
}

#[derive(Clone)]
pub(crate) struct StoreDef {
    pub spec: StoreSpec,
    pub serdes: Arc<dyn Any + Send + Sync>,
    /// Its keys and values as JSON, for SQL (stores whose types serde can serialize; a store
    /// added through the Processor API without them is read as bytes).
    pub json: Option<crate::query::StoreJson>,
    /// A window store's window size, when its windows have one (SQL's `window_end`).
    pub window_size_ms: Option<i64>,
    /// Written by a DSL operator that keys it by its records' key, so a key lives in the one
    /// partition its records go to (SQL routes lookups by it); a Processor API store may hold
    /// a key anywhere.
    pub keyed_by_record_key: bool,
}

/// Whether a topic belongs to the user or to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TopicKind {
    /// Named by the user; must exist before the application starts.
    External,
    /// `<application.id>-<name>-repartition`, created by Eddy.
    Repartition,
    /// `<application.id>-<store>-changelog`, compacted, created by Eddy.
    Changelog,
}

/// A connected part of the topology; each runs as one task per input partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTopology {
    pub id: usize,
    /// Node indices, in topological order.
    pub nodes: Vec<usize>,
    pub source_topics: Vec<String>,
    pub sink_topics: Vec<String>,
    pub stores: Vec<String>,
}

/// A complete, checked topology, ready to run in the test driver or on Kafka.
#[derive(Clone)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: BTreeMap<String, StoreDef>,
    pub(crate) subtopologies: Vec<SubTopology>,
    pub(crate) repartition_topics: BTreeSet<String>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Topology {
    /// The sub-topologies.
    pub fn subtopologies(&self) -> &[SubTopology] {
        &self.subtopologies
    }

    /// Names of every store.
    pub fn store_names(&self) -> Vec<String> {
        self.stores.keys().cloned().collect()
    }

    /// Whether a store logs to a changelog.
    pub fn store_is_logged(&self, name: &str) -> bool {
        self.stores.get(name).is_some_and(|s| s.spec.logging)
    }

    /// Whether a store lives on RocksDB (and so may be checkpointed) rather than in memory.
    pub fn store_is_persistent(&self, name: &str) -> bool {
        self.stores.get(name).is_some_and(|s| s.spec.persistent)
    }

    /// The spec of a store.
    pub(crate) fn store_spec(&self, name: &str) -> Option<&StoreSpec> {
        self.stores.get(name).map(|s| &s.spec)
    }

    /// Whether `physical` (a broker topic name) is one of this topology's repartition topics.
    pub(crate) fn is_repartition_topic(&self, application_id: &str, physical: &str) -> bool {
        self.repartition_topics
            .iter()
            .any(|t| super::internal_topics::prefixed(application_id, t) == physical)
    }

    /// The topic name on the broker: internal topics get the application id in front.
    pub fn physical_topic(&self, application_id: &str, topic: &str) -> String {
        if self.repartition_topics.contains(topic) {
            super::internal_topics::prefixed(application_id, topic)
        } else {
            topic.to_string()
        }
    }

    /// The changelog topic of `store`.
    pub fn changelog_topic(application_id: &str, store: &str) -> String {
        super::internal_topics::changelog(application_id, store)
    }

    /// The compacted topic where the instances of `application_id` publish their query
    /// endpoints (`application.server`) and the partitions they answer for.
    pub fn query_endpoints_topic(application_id: &str) -> String {
        super::internal_topics::query_endpoints(application_id)
    }

    /// The topic where an instance whose uncaught-error handler answered "shutdown
    /// application" asks every instance of `application_id` to shut down.
    pub fn shutdown_requests_topic(application_id: &str) -> String {
        super::internal_topics::shutdown_requests(application_id)
    }

    /// Every topic the topology reads, writes or creates, by kind (logical names).
    pub fn topics(&self) -> BTreeMap<String, TopicKind> {
        let mut out = BTreeMap::new();
        for node in &self.nodes {
            let topics = match &node.kind {
                NodeKind::Source { topics, .. } => topics.clone(),
                NodeKind::Sink { topic } => vec![topic.clone()],
                NodeKind::Processor => vec![],
            };
            for t in topics {
                let kind = if self.repartition_topics.contains(&t) {
                    TopicKind::Repartition
                } else {
                    TopicKind::External
                };
                out.insert(t, kind);
            }
        }
        for (name, store) in &self.stores {
            if store.spec.logging {
                out.insert(
                    super::internal_topics::changelog_logical(name),
                    TopicKind::Changelog,
                );
            }
        }
        out
    }

    /// User topics the topology reads.
    pub fn source_topics(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter().cloned())
            .filter(|t| !self.repartition_topics.contains(t))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The sub-topology that reads each source topic, by the topic's name on the broker.
    pub fn subtopologies_by_topic(&self, application_id: &str) -> BTreeMap<String, usize> {
        self.subtopologies
            .iter()
            .flat_map(|s| {
                s.source_topics
                    .iter()
                    .map(|t| (self.physical_topic(application_id, t), s.id))
            })
            .collect()
    }

    /// The changelog topic of each logged store, with the sub-topology and store it belongs to.
    pub(crate) fn stores_by_changelog(
        &self,
        application_id: &str,
    ) -> BTreeMap<String, (usize, String)> {
        self.subtopologies
            .iter()
            .flat_map(|s| {
                s.stores
                    .iter()
                    .filter(|store| self.store_is_logged(store))
                    .map(|store| {
                        (
                            Self::changelog_topic(application_id, store),
                            (s.id, store.clone()),
                        )
                    })
            })
            .collect()
    }

    pub(crate) fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}
