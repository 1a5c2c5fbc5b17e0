//! Topologies: the graph of sources, processors, sinks and stores, cut into sub-topologies at
//! topics, and the low-level builder that the DSL and Processor-API users both build with.

mod builder;
mod describe;
mod graph;
pub(crate) mod internal_topics;

pub use builder::TopologyBuilder;
pub(crate) use graph::{NodeKind, StoreDef};
pub use graph::{SubTopology, TopicKind, Topology};
