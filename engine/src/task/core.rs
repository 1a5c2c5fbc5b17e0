//! The state a task's processors share while they run: the nodes, stores, time, schedules and
//! what the task has produced. Processors see it through [`crate::ProcessorContext`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::processor::node::{DynRecord, Node};
use crate::processor::StoreEntry;
use crate::record::{Headers, RecordMetadata};
use crate::task::collector::{DeadLetter, ProducedRecord};
use crate::task::schedule::Schedule;
use crate::time::WallClock;

/// A record as read from a topic, kept while it is processed so that it can be dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The Kafka record timestamp (the event time is extracted from it or the value).
    pub timestamp: i64,
    pub headers: Headers,
}

/// What the task knows of each node, shared by every instance of the task's nodes.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub name: String,
    pub children: Vec<usize>,
    pub stores: Vec<String>,
}

pub(crate) struct TaskCore {
    pub task_id: String,
    pub application_id: String,
    pub nodes: Vec<Option<Box<dyn Node>>>,
    pub info: Arc<Vec<NodeInfo>>,
    pub stores: HashMap<String, StoreEntry>,
    pub metadata: Option<RecordMetadata>,
    pub input: Option<InputRecord>,
    /// Event time of the input record being processed.
    pub input_time: i64,
    pub stream_time: i64,
    pub clock: WallClock,
    pub schedules: Vec<Schedule>,
    pub next_schedule: u64,
    pub produced: Vec<ProducedRecord>,
    pub dead_letters: Vec<DeadLetter>,
    pub dropped: BTreeMap<String, u64>,
    pub metrics: crate::task::metrics::TaskMetrics,
    /// The timestamp of the record at the node running now, shared with the stores (caching
    /// and change-logging layers stamp their writes with it).
    pub record_time: eddy_state::RecordTime,
}

impl TaskCore {
    /// Runs `rec` through node `id` (and, through its forwards, everything below it).
    pub fn dispatch(&mut self, id: usize, rec: DynRecord) -> Result<()> {
        let mut node = self.take_node(id)?;
        // The child runs in the context of the record it was given; the parent's comes back.
        let parent_time = self.record_time.get();
        self.record_time.set(rec.timestamp);
        let result = node.process(rec, self, id);
        self.record_time.set(parent_time);
        self.nodes[id] = Some(node);
        result
    }

    pub fn take_node(&mut self, id: usize) -> Result<Box<dyn Node>> {
        self.nodes
            .get_mut(id)
            .and_then(Option::take)
            .ok_or_else(|| {
                EngineError::Topology(format!(
                    "node {id} was re-entered: the topology has a cycle"
                ))
            })
    }

    pub fn metadata_timestamp(&self) -> i64 {
        self.input_time
    }

    pub fn count_dropped(&mut self, reason: &str) {
        *self.dropped.entry(reason.to_string()).or_default() += 1;
        self.metrics.dropped(reason);
    }

    /// Sends the record being processed to the dead-letter path with `reason`.
    pub fn dead_letter(&mut self, reason: String) {
        if let Some(input) = &self.input {
            self.dead_letters.push(DeadLetter {
                topic: input.topic.clone(),
                partition: input.partition,
                offset: input.offset,
                key: input.key.clone(),
                value: input.value.clone(),
                timestamp: input.timestamp,
                error: reason,
            });
        }
    }
}
