//! Restoring a task's logged stores before it processes anything (Kafka Streams'
//! `StoreChangelogReader`), one changelog partition at a time, each through explicit states:
//!
//! 1. **Registered**: the changelog partition is asked for its log start and its end. The end is
//!    the high watermark (read_uncommitted), not the last stable offset a read_committed client
//!    is told: records committed after a transaction that is still open (a killed worker's)
//!    belong to the state too, so the restore waits for that transaction to be decided.
//! 2. The start: a persistent store starts at its checkpoint; an in-memory store (never
//!    checkpointed: it is empty after a restart) at the log start. A checkpoint outside the log
//!    means the local state belongs to another incarnation of the topic: a
//!    [`StateError::Corrupted`] error, which makes the caller wipe it.
//! 3. **Restoring**: the partition is read read_committed from the start; every record is written
//!    to its store, and every [`RESTORE_BATCH`] records the state is committed locally with the
//!    checkpoint it reaches, so an interrupted restore resumes where it stopped.
//! 4. **Completed**: once the consumer's position has reached the end. The position is what
//!    ends a restore, never a pause in what arrives (librdkafka stops fetching for a while once
//!    its queue is full): it moves past transaction markers and aborted records, which are never
//!    delivered, so a changelog that ends with them completes too.
//! 5. A restore that makes no progress for [`RESTORE_STALL_TIMEOUT`] (a transaction that is never
//!    decided), or is stopped by the application closing, is an error: the task stays closed and
//!    is opened again later; what it restored so far is kept with its checkpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use eddy_state::StateError;

use crate::error::{EngineError, Result};
use crate::runtime::clients::KafkaClients;
use crate::task::StreamTask;
use crate::topology::Topology;

/// Records restored between two local commits.
const RESTORE_BATCH: u64 = 10_000;

/// How long a restore may go without its position moving before it gives up. A dead worker's
/// transaction stays open until `transaction.timeout.ms` aborts it.
const RESTORE_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Where one changelog partition's restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangelogState {
    /// Its bounds are known; nothing read yet.
    Registered { start: i64, end: i64 },
    /// Read up to `position` (the next offset) of `end`.
    Restoring { position: i64, end: i64 },
    /// The position reached the end; `restored` records were written.
    Completed { restored: u64 },
}

/// A stream thread's restore clients, made on its first restore and kept for the next ones.
pub(crate) struct StoreChangelogReader {
    application_id: String,
    /// Reads the changelogs, read_committed.
    consumer: BaseConsumer,
    /// Asks for the changelogs' bounds (read_uncommitted: the end is the high watermark).
    watermarks: BaseConsumer,
    /// The application is closing: a restore stops where it is (its progress is kept).
    shutdown: Arc<AtomicBool>,
}

impl StoreChangelogReader {
    pub fn new(
        clients: &KafkaClients,
        application_id: &str,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self> {
        Ok(Self {
            application_id: application_id.to_string(),
            consumer: clients.restore_consumer("read_committed")?,
            watermarks: clients.restore_consumer("read_uncommitted")?,
            shutdown,
        })
    }

    /// Brings every logged store of `task` up to the end of its changelog partition. Returns
    /// the number of records read: only what the checkpoints did not already cover.
    pub fn restore_task(
        &self,
        task: &mut StreamTask,
        topology: &Topology,
        partition: i32,
    ) -> Result<u64> {
        let restored = self.restore_stores(task, topology, partition);
        // Stop fetching until the next restore.
        let _ = self.consumer.unassign();
        restored
    }

    fn restore_stores(
        &self,
        task: &mut StreamTask,
        topology: &Topology,
        partition: i32,
    ) -> Result<u64> {
        let stores = task.logged_stores(topology);
        if stores.is_empty() {
            return Ok(0);
        }
        let checkpoint = task.checkpoint()?;
        let mut restored = 0u64;
        let started = Instant::now();
        let app = self.application_id.as_str();
        let restoring = crate::metrics::RESTORING_TASKS.with_label_values(&[app]);
        restoring.inc();
        // Whatever the outcome, the task is not restoring once this returns.
        struct Restoring(prometheus::IntGauge);
        impl Drop for Restoring {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        let _restoring = Restoring(restoring);
        for store in stores {
            let topic = Topology::changelog_topic(&self.application_id, &store);
            // Only persistent stores keep their state across a restart.
            let from = topology
                .store_is_persistent(&store)
                .then(|| checkpoint.changelog_offsets.get(&store).copied())
                .flatten();
            let mut state = self.register(&store, &topic, partition, from)?;
            if let ChangelogState::Registered { start, end } = state {
                let task_id = task.id().to_string();
                crate::metrics::RESTORE_REMAINING
                    .with_label_values(&[app, task_id.as_str(), store.as_str()])
                    .set((end - start).max(0));
                // The restored-records series exists from the first restore, even of nothing.
                task.count_restored(&store, 0);
            }
            loop {
                state = match state {
                    ChangelogState::Registered { start, end } if start >= end => {
                        ChangelogState::Completed { restored: 0 }
                    }
                    ChangelogState::Registered { start, end } => {
                        self.assign(&topic, partition, start)?;
                        ChangelogState::Restoring {
                            position: start,
                            end,
                        }
                    }
                    ChangelogState::Restoring { position, end } => {
                        let n =
                            self.read_to_end(task, &store, (&topic, partition), position, end)?;
                        task.count_restored(&store, n);
                        tracing::debug!(task = %task.id(), store, from = position, to = end, restored = n, "restored store");
                        ChangelogState::Completed { restored: n }
                    }
                    ChangelogState::Completed { restored: n } => {
                        restored += n;
                        break;
                    }
                };
            }
        }
        crate::metrics::RESTORE_SECONDS
            .with_label_values(&[app])
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(task = %task.id(), restored, elapsed_ms = started.elapsed().as_millis() as u64, "restored state");
        Ok(restored)
    }

    /// Step 1 and 2: the changelog partition's bounds and where this store starts in it.
    fn register(
        &self,
        store: &str,
        topic: &str,
        partition: i32,
        checkpoint: Option<i64>,
    ) -> Result<ChangelogState> {
        let query = || {
            self.watermarks
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map_err(|e| EngineError::kafka(format!("changelog {topic}-{partition}"), e))
        };
        let (mut low, mut high) = query()?;
        // A query that librdkafka retried after an error has come back with the end in place of
        // the start (seen with a refused ListOffsets): an empty-looking changelog that a restore
        // without a checkpoint would skip is asked about once more.
        if checkpoint.is_none() && low == high && high > 0 {
            (low, high) = query()?;
        }
        let (mut low, mut high) = (low.min(high), low.max(high));
        if let Some(c) = checkpoint {
            if c > high || c < low {
                // The same doubtful answer as above would wipe good local state: ask again
                // before calling the checkpoint foreign.
                let (l, h) = query()?;
                (low, high) = (l.min(h), l.max(h));
            }
            if c > high || c < low {
                return Err(EngineError::State(StateError::Corrupted {
                    store: store.to_string(),
                    reason: format!(
                        "checkpoint {c} is outside changelog {topic}-{partition} [{low}, {high}]"
                    ),
                }));
            }
        }
        Ok(ChangelogState::Registered {
            start: checkpoint.unwrap_or(low),
            end: high,
        })
    }

    fn assign(&self, topic: &str, partition: i32, start: i64) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        // Not `Offset::Beginning`: resolving it costs the client a round of offset queries per
        // partition (full restores ran at a third of the speed).
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| EngineError::kafka(format!("restoring {topic}-{partition}"), e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| EngineError::kafka(format!("restoring {topic}-{partition}"), e))
    }

    /// Step 3 and 4: reads `topic`-`partition` from `start` into `store` until the consumer's
    /// position reaches `end`. Returns the records written.
    fn read_to_end(
        &self,
        task: &mut StreamTask,
        store: &str,
        (topic, partition): (&str, i32),
        start: i64,
        end: i64,
    ) -> Result<u64> {
        let consumer = &self.consumer;
        let mut restored = 0u64;
        let mut position = start;
        let mut uncommitted = 0u64;
        let mut moved_at = Instant::now();
        let mut waiting_logged = false;
        let checkpoint = |position: i64| BTreeMap::from([(store.to_string(), position)]);
        let task_id = task.id().to_string();
        let remaining = crate::metrics::RESTORE_REMAINING.with_label_values(&[
            self.application_id.as_str(),
            task_id.as_str(),
            store,
        ]);
        remaining.set(end - position);
        // However this ends (closing, a stall, an error), nothing is left restoring here.
        struct Remaining(prometheus::IntGauge);
        impl Drop for Remaining {
            fn drop(&mut self) {
                self.0.set(0);
            }
        }
        let remaining = Remaining(remaining);
        let remaining = &remaining.0;
        while position < end {
            if self.shutdown.load(Ordering::SeqCst) {
                task.commit_state(&checkpoint(position))?;
                return Err(EngineError::TaskMigrated(format!(
                    "closing: restore of {topic}-{partition} stopped at offset {position} of {end}"
                )));
            }
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    task.restore_record(store, m.key().unwrap_or_default(), m.payload())?;
                    restored += 1;
                    uncommitted += 1;
                    position = position.max(m.offset() + 1);
                    moved_at = Instant::now();
                    if uncommitted >= RESTORE_BATCH {
                        task.commit_state(&checkpoint(position))?;
                        uncommitted = 0;
                        remaining.set(end - position);
                    }
                    continue;
                }
                Some(Err(e)) => {
                    return Err(EngineError::kafka(
                        format!("restoring {topic}-{partition}"),
                        e,
                    ))
                }
                None => {}
            }
            // Nothing delivered: markers and aborted records move the position without a
            // record, so the consumer's own position says how far the restore is.
            let reported = consumer
                .position()
                .ok()
                .and_then(|p| p.find_partition(topic, partition).map(|e| e.offset()));
            if let Some(Offset::Offset(o)) = reported {
                if o > position {
                    position = o;
                    moved_at = Instant::now();
                }
            }
            if position >= end {
                break;
            }
            if !waiting_logged && moved_at.elapsed() >= Duration::from_secs(2) {
                tracing::info!(
                    topic,
                    partition,
                    at = position,
                    end,
                    "restore waits (an open transaction on the changelog, or a slow broker)"
                );
                waiting_logged = true;
            }
            if moved_at.elapsed() >= RESTORE_STALL_TIMEOUT {
                task.commit_state(&checkpoint(position))?;
                return Err(EngineError::TaskMigrated(format!(
                    "restoring {topic}-{partition}: stuck at offset {position} of {end} for {RESTORE_STALL_TIMEOUT:?}"
                )));
            }
        }
        task.commit_state(&checkpoint(position))?;
        remaining.set(0);
        Ok(restored)
    }
}
