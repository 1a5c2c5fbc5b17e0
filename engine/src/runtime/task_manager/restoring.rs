//! Restores off the rebalance path (Kafka Streams' state updater, on the stream thread): a task
//! created in the rebalance callback is restored by the thread's loop, a slice per round,
//! while the loop goes on polling the main consumer, so that a long restore keeps the member
//! in the group (`max.poll.interval.ms`) and the thread's restored tasks keep processing.
//!
//! 1. **Created** (in the callback): the task is opened and its restore registered; its input
//!    partitions are paused on the main consumer.
//! 2. **Restoring**: each round gives the first restoring task up to [`RESTORE_SLICE`] of
//!    changelog reading. What a slice wrote is committed locally with its checkpoint, so a
//!    restore stopped by a rebalance or a rewind resumes where it was.
//! 3. **Running**: once every store reached its changelog's end, the task is initialized and
//!    registered for queries; a record of its input that was fetched before the pause took
//!    hold is fetched again (the partition is sought back to it), and the partition resumes.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::{thread_label, TaskManager};
use crate::error::{ErrorKind, Result};
use crate::runtime::Progress;

/// Changelog reading per round of the loop.
const RESTORE_SLICE: Duration = Duration::from_millis(200);

impl TaskManager {
    /// Whether a task of this thread is restoring (the loop then polls without waiting).
    pub fn is_restoring(&self) -> bool {
        !self.restoring.is_empty()
    }

    /// Step 1: pauses the input partitions of restoring tasks that are not paused yet.
    pub(super) fn pause_restoring<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let mut tpl = TopicPartitionList::new();
        let mut pausing = Vec::new();
        for (topic, partition) in &self.assigned {
            let key = (topic.clone(), *partition);
            let restoring = self
                .task_of(topic, *partition)
                .is_some_and(|id| self.restoring.contains_key(&id));
            if restoring && !self.paused_restoring.contains(&key) {
                tpl.add_partition(topic, *partition);
                pausing.push(key);
            }
        }
        if pausing.is_empty() {
            return;
        }
        match consumer.pause(&tpl) {
            Ok(()) => self.paused_restoring.extend(pausing),
            // Not fatal: what arrives for a restoring task is fetched again once it runs.
            Err(e) => tracing::warn!("cannot pause the partitions of restoring tasks: {e}"),
        }
    }

    /// Step 2 and 3 for one slice. An error (the broker lost, a stalled changelog) is the
    /// thread's to handle as a failure to open tasks: it rewinds and registers them again.
    pub fn restore_step<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let Some(&id) = self.restoring.keys().next() else {
            return Ok(());
        };
        // Made before the task is taken out, so that no error can drop it unclosed.
        self.changelog_reader()?;
        let Some((mut task, mut restore)) = self.restoring.remove(&id) else {
            return Ok(());
        };
        let sliced = match &self.changelog_reader {
            Some(reader) => {
                reader.restore_for(&mut task, &mut restore, id.partition, RESTORE_SLICE)
            }
            None => Ok(false),
        };
        let done = match sliced {
            Ok(true) => Some((task, restore)),
            Ok(false) => {
                self.restoring.insert(id, (task, restore));
                None
            }
            Err(e) => {
                task.close();
                drop(task);
                self.status
                    .remove_task(&id.to_string(), &thread_label(self.index));
                let wiped = e.kind() == ErrorKind::StateCorrupted;
                if wiped {
                    tracing::warn!(task = %id, "wiping local state: {e}");
                    self.wipe_local_state(id);
                }
                // Released after the wipe: a standby may open the directory from now on.
                self.standbys.release(id);
                if wiped {
                    // Wiped: the retry restores it from the changelog's start.
                    return Err(crate::error::EngineError::TaskMigrated(format!(
                        "restoring {id}: {e}; local state wiped"
                    )));
                }
                return Err(e);
            }
        };
        let Some((mut task, restore)) = done else {
            return Ok(());
        };
        Progress::add(&self.progress.restored, restore.restored());
        drop(restore);
        if let Err(e) = self.finish_opening(id, &mut task) {
            task.close();
            drop(task);
            self.standbys.release(id);
            self.status
                .remove_task(&id.to_string(), &thread_label(self.index));
            return Err(e);
        }
        if let Some(db) = task.rocksdb() {
            let stores = self.persistent_stores(id);
            self.queryable.register(&stores, id.partition, db);
        }
        self.tasks.insert(id, task);
        self.status.set_task(self.task_status(id, "RUNNING"));
        self.resume_restored(consumer, id);
        Ok(())
    }

    /// Step 3's last part: seeks back what was fetched and skipped, then resumes the task's
    /// input partitions.
    fn resume_restored<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        id: super::TaskId,
    ) {
        let inputs: Vec<(String, i32)> = self
            .paused_restoring
            .iter()
            .filter(|(topic, partition)| self.task_of(topic, *partition) == Some(id))
            .cloned()
            .collect();
        let mut tpl = TopicPartitionList::new();
        for key in &inputs {
            if let Some(offset) = self.skipped_restoring.remove(key) {
                if let Err(e) = consumer.seek(
                    &key.0,
                    key.1,
                    Offset::Offset(offset),
                    Duration::from_secs(10),
                ) {
                    // Going on from where the fetcher is would skip records: stop the task's
                    // partitions from moving until a rewind puts them right.
                    tracing::error!(topic = key.0, partition = key.1, "cannot seek back: {e}");
                    self.failure = Some(crate::error::EngineError::kafka(
                        format!("seeking {}-{} back to {offset}", key.0, key.1),
                        e,
                    ));
                    return;
                }
            }
            tpl.add_partition(&key.0, key.1);
            self.paused_restoring.remove(key);
        }
        if let Err(e) = consumer.resume(&tpl) {
            tracing::warn!("cannot resume restored partitions: {e}");
        }
    }

    /// Closes every restoring task (their progress is checkpointed already); their partitions
    /// stay paused until their tasks run again.
    pub(super) fn close_restoring(&mut self) {
        for (id, (mut task, _restore)) in std::mem::take(&mut self.restoring) {
            task.close();
            drop(task);
            self.standbys.release(id);
            self.status
                .remove_task(&id.to_string(), &thread_label(self.index));
        }
        if let Some(reader) = &self.changelog_reader {
            reader.unassign();
        }
        // Every caller forgets the partitions or seeks them to their committed offsets.
        self.skipped_restoring.clear();
    }
}
