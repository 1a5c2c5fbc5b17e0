//! What the broker holds: topics and their partition logs, producer ids, committed offsets.

use std::collections::BTreeMap;

use crate::journal::{Entry, Journal};
use crate::log::{split_batches, IncomingBatch, PartitionLog, StoredBatch};

/// A topic.
#[derive(Debug)]
pub(crate) struct Topic {
    pub id: [u8; 16],
    pub partitions: Vec<PartitionLog>,
    pub configs: BTreeMap<String, String>,
}

/// How many batches per producer and partition are remembered for duplicate detection (the
/// most requests an idempotent producer keeps in flight).
pub(crate) const RECENT_BATCHES: usize = 5;

/// An idempotent producer's epoch and latest batches per partition.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProducerState {
    pub epoch: i16,
    /// (topic, partition) → (first sequence, last sequence, base offset) of its latest
    /// batches, oldest first: up to [`RECENT_BATCHES`], as a Kafka broker keeps, so that a
    /// producer retrying all its in-flight requests (after a lost connection) gets each one
    /// acknowledged as a duplicate instead of an out-of-order error.
    pub last: BTreeMap<(String, i32), std::collections::VecDeque<(i32, i32, i64)>>,
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
    /// With a data directory: where every change is written before it is acknowledged.
    pub journal: Option<Journal>,
}

impl ClusterState {
    /// Writes a change to the journal, when there is one.
    fn record(&mut self, entry: Entry) {
        if let Some(j) = &mut self.journal {
            j.write(&entry);
        }
    }

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
        self.record(Entry::CreateTopic {
            name: name.to_string(),
            partitions,
            configs: configs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
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

    /// Deletes a topic; `false` if there is none.
    pub fn delete_topic(&mut self, name: &str) -> bool {
        let gone = self.topics.remove(name).is_some();
        if gone {
            self.record(Entry::DeleteTopic {
                name: name.to_string(),
            });
        }
        gone
    }

    /// Appends a checked batch to a partition; its base offset, or `None` for no such partition.
    pub fn append(&mut self, topic: &str, partition: i32, batch: IncomingBatch) -> Option<i64> {
        let log = self.partition_mut(topic, partition)?;
        let base = log.append(batch);
        let bytes = log
            .batches
            .last()
            .map(|b| b.bytes.to_vec())
            .unwrap_or_default();
        self.record(Entry::Append {
            topic: topic.to_string(),
            partition,
            bytes,
        });
        Some(base)
    }

    /// Drops records below `before`; the new log start offset.
    pub fn delete_records(&mut self, topic: &str, partition: i32, before: i64) -> Option<i64> {
        let log = self.partition_mut(topic, partition)?;
        log.delete_before(before);
        let start = log.log_start_offset;
        self.record(Entry::DeleteRecords {
            topic: topic.to_string(),
            partition,
            before,
        });
        Some(start)
    }

    /// Commits a group's offset.
    pub fn commit_offset(&mut self, key: (String, String, i32), offset: CommittedOffset) {
        self.record(Entry::CommitOffset {
            group: key.0.clone(),
            topic: key.1.clone(),
            partition: key.2,
            offset: offset.offset,
            metadata: offset.metadata.clone(),
        });
        self.offsets.insert(key, offset);
    }

    /// A producer id never handed out before.
    pub fn new_producer_id(&mut self) -> i64 {
        self.next_producer_id += 1;
        let id = self.next_producer_id;
        self.producers.insert(id, ProducerState::default());
        self.record(Entry::NextProducerId { id });
        id
    }

    /// Records the producer id and epoch of a transactional id.
    pub fn journal_transaction(&mut self, id: &str) {
        if let Some(t) = self.transactions.get(id) {
            let entry = Entry::Transaction {
                id: id.to_string(),
                producer_id: t.producer_id,
                epoch: t.epoch,
                timeout_ms: t.timeout.as_millis() as u64,
            };
            self.record(entry);
        }
    }

    /// Records a partition's batches after compaction up to `boundary`.
    pub fn journal_compaction(&mut self, topic: &str, partition: i32, boundary: i64) {
        let Some(log) = self.partition(topic, partition) else {
            return;
        };
        let batches = log
            .batches
            .iter()
            .filter(|b| b.last_offset < boundary)
            .map(|b| b.bytes.to_vec())
            .collect();
        self.record(Entry::Compacted {
            topic: topic.to_string(),
            partition,
            batches,
            boundary,
        });
    }

    /// Applies journal entries (at start, before the journal is attached).
    pub fn replay(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            match entry {
                Entry::CreateTopic {
                    name,
                    partitions,
                    configs,
                } => {
                    self.create_topic(&name, partitions, configs.into_iter().collect());
                }
                Entry::DeleteTopic { name } => {
                    self.delete_topic(&name);
                }
                Entry::Append {
                    topic,
                    partition,
                    bytes,
                } => {
                    for b in split_batches(&bytes).unwrap_or_default() {
                        self.append(&topic, partition, b);
                    }
                }
                Entry::DeleteRecords {
                    topic,
                    partition,
                    before,
                } => {
                    self.delete_records(&topic, partition, before);
                }
                Entry::CommitOffset {
                    group,
                    topic,
                    partition,
                    offset,
                    metadata,
                } => {
                    self.offsets.insert(
                        (group, topic, partition),
                        CommittedOffset { offset, metadata },
                    );
                }
                Entry::NextProducerId { id } => {
                    self.next_producer_id = self.next_producer_id.max(id);
                    self.producers.entry(id).or_default();
                }
                Entry::Transaction {
                    id,
                    producer_id,
                    epoch,
                    timeout_ms,
                } => {
                    self.next_producer_id = self.next_producer_id.max(producer_id);
                    self.producers.insert(
                        producer_id,
                        ProducerState {
                            epoch,
                            ..Default::default()
                        },
                    );
                    self.transactions.insert(
                        id,
                        Transaction {
                            producer_id,
                            epoch,
                            timeout: std::time::Duration::from_millis(timeout_ms),
                            started: None,
                            partitions: Default::default(),
                            offsets: Vec::new(),
                        },
                    );
                }
                Entry::Compacted {
                    topic,
                    partition,
                    batches,
                    boundary,
                } => {
                    if let Some(log) = self.partition_mut(&topic, partition) {
                        let mut rebuilt: Vec<StoredBatch> = batches
                            .iter()
                            .filter_map(|b| StoredBatch::from_stored(b))
                            .collect();
                        rebuilt.extend(log.batches.drain(..).filter(|b| b.last_offset >= boundary));
                        log.batches = rebuilt;
                        log.aborted.retain(|(_, _, last)| *last >= boundary);
                    }
                }
            }
        }
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
