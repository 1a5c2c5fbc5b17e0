//! `describe()`: a topology as text (in Kafka Streams' layout) and as a Mermaid graph.

use std::fmt::Write;

use crate::topology::graph::{NodeKind, Topology};

impl Topology {
    fn children_of(&self, i: usize) -> Vec<&str> {
        let name = &self.nodes[i].name;
        self.nodes
            .iter()
            .filter(|n| n.parents.iter().any(|p| p == name))
            .map(|n| n.name.as_str())
            .collect()
    }

    /// The sub-topologies with their sources, processors, stores and sinks, as text.
    pub fn describe(&self) -> String {
        let mut out = String::from("Topologies:\n");
        for sub in &self.subtopologies {
            let _ = writeln!(out, "   Sub-topology: {}", sub.id);
            for &i in &sub.nodes {
                let node = &self.nodes[i];
                let _ = match &node.kind {
                    NodeKind::Source { topics, .. } => {
                        writeln!(
                            out,
                            "    Source: {} (topics: [{}])",
                            node.name,
                            topics.join(", ")
                        )
                    }
                    NodeKind::Processor => writeln!(
                        out,
                        "    Processor: {} (stores: [{}])",
                        node.name,
                        node.stores.join(", ")
                    ),
                    NodeKind::Sink { topic } => {
                        writeln!(out, "    Sink: {} (topic: {topic})", node.name)
                    }
                };
                let children = self.children_of(i);
                if !children.is_empty() {
                    let _ = writeln!(out, "      --> {}", children.join(", "));
                }
                if !node.parents.is_empty() {
                    let _ = writeln!(out, "      <-- {}", node.parents.join(", "));
                }
            }
        }
        out
    }

    /// The topology as a Mermaid flowchart: one subgraph per sub-topology, topics as stadiums,
    /// stores as cylinders.
    pub fn describe_mermaid(&self) -> String {
        let id = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        };
        let mut out = String::from("flowchart LR\n");
        let mut topics = std::collections::BTreeSet::new();
        for sub in &self.subtopologies {
            let _ = writeln!(out, "  subgraph sub{}[\"Sub-topology {}\"]", sub.id, sub.id);
            for &i in &sub.nodes {
                let node = &self.nodes[i];
                let _ = writeln!(out, "    n_{}[\"{}\"]", id(&node.name), node.name);
            }
            for store in &sub.stores {
                let _ = writeln!(out, "    s_{}[(\"{}\")]", id(store), store);
            }
            let _ = writeln!(out, "  end");
        }
        for node in &self.nodes {
            let n = id(&node.name);
            for p in &node.parents {
                let _ = writeln!(out, "  n_{} --> n_{n}", id(p));
            }
            for s in &node.stores {
                let _ = writeln!(out, "  n_{n} -.- s_{}", id(s));
            }
            match &node.kind {
                NodeKind::Source { topics: ts, .. } => {
                    for t in ts {
                        topics.insert(t.clone());
                        let _ = writeln!(out, "  t_{} --> n_{n}", id(t));
                    }
                }
                NodeKind::Sink { topic } => {
                    topics.insert(topic.clone());
                    let _ = writeln!(out, "  n_{n} --> t_{}", id(topic));
                }
                NodeKind::Processor => {}
            }
        }
        for t in topics {
            let _ = writeln!(out, "  t_{}([\"{}\"])", id(&t), t);
        }
        out
    }
}
