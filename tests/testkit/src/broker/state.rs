//! What the broker holds: topics and their partition logs, producer ids, committed offsets.

use std::collections::BTreeMap;

use crate::broker::log::PartitionLog;

/// A topic.
#[derive(Debug)]
pub(crate) struct Topic {
    pub id: [u8; 16],
    pub partitions: Vec<PartitionLog>,
    pub configs: BTreeMap<String, String>,
}

/// An idempotent producer's last sequence per partition.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProducerState {
    pub epoch: i16,
    /// (topic, partition) → (first sequence, last sequence, base offset) of its last batch.
    pub last: BTreeMap<(String, i32), (i32, i32, i64)>,
}

/// A committed offset of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub offset: i64,
    pub metadata: Option<String>,
}

/// A transactional id's transaction.
#[derive(Debug, Clone)]
pub(crate) struct Transaction {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout: std::time::Duration,
    /// When the open transaction began; `None` when there is none.
    pub started: Option<std::time::Instant>,
    pub partitions: std::collections::BTreeSet<(String, i32)>,
    /// Offsets committed in the transaction: visible once it commits.
    pub offsets: Vec<((String, String, i32), CommittedOffset)>,
}

/// The whole cluster (one node).
#[derive(Debug, Default)]
pub(crate) struct ClusterState {
    pub topics: BTreeMap<String, Topic>,
    pub next_producer_id: i64,
    pub producers: BTreeMap<i64, ProducerState>,
    pub offsets: BTreeMap<(String, String, i32), CommittedOffset>,
    pub transactions: BTreeMap<String, Transaction>,
    next_topic_id: u64,
}

impl ClusterState {
    /// Creates `name` with `partitions` partitions; `false` if it exists.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> bool {
        if self.topics.contains_key(name) {
            return false;
        }
        self.next_topic_id += 1;
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&self.next_topic_id.to_be_bytes());
        id[0] = 0xed;
        let partitions = (0..partitions.max(1))
            .map(|_| PartitionLog::default())
            .collect();
        self.topics.insert(
            name.to_string(),
            Topic {
                id,
                partitions,
                configs,
            },
        );
        true
    }

    pub fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionLog> {
        self.topics
            .get_mut(topic)?
            .partitions
            .get_mut(usize::try_from(partition).ok()?)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionLog> {
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)
    }
}
