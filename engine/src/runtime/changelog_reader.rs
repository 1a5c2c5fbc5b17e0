//! Restoring a task's logged stores before it processes anything (Kafka Streams'
//! `StoreChangelogReader`), one changelog partition at a time, each through explicit states.
//! A restore runs in slices ([`StoreChangelogReader::restore_for`]) from the stream thread's
//! loop, so that the thread goes on polling its main consumer (and stays in the group) however
//! long the restore is:
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

use std::cell::RefCell;
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

/// One logged store of a task being restored.
struct StoreRestore {
    store: String,
    topic: String,
    state: ChangelogState,
    /// Written since the last local commit.
    uncommitted: u64,
    /// When the position last moved.
    moved_at: Instant,
    waiting_logged: bool,
    remaining: prometheus::IntGauge,
}

/// A task's restore in progress: its stores in order, each in its state.
pub(crate) struct TaskRestore {
    stores: Vec<StoreRestore>,
    /// Records written so far, over every store.
    restored: u64,
    started: Instant,
    _restoring: RestoringGauge,
}

/// Counts the task restoring from registration until the restore is dropped, however it ends.
struct RestoringGauge(prometheus::IntGauge);

impl Drop for RestoringGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Drop for StoreRestore {
    fn drop(&mut self) {
        // Completed, stopped or failed: nothing is left restoring here.
        self.remaining.set(0);
    }
}

impl TaskRestore {
    /// Records written so far.
    pub fn restored(&self) -> u64 {
        self.restored
    }
}

/// A stream thread's restore clients, made on its first restore and kept for the next ones.
pub(crate) struct StoreChangelogReader {
    application_id: String,
    /// Reads the changelogs, read_committed.
    consumer: BaseConsumer,
    /// The changelog partition the consumer is assigned now, and from where.
    assigned: RefCell<Option<(String, i32)>>,
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
            assigned: RefCell::new(None),
            watermarks: clients.restore_consumer("read_uncommitted")?,
            shutdown,
        })
    }

    /// Steps 1 and 2 for every logged store of `task`.
    pub fn register_task(
        &self,
        task: &mut StreamTask,
        topology: &Topology,
        partition: i32,
    ) -> Result<TaskRestore> {
        let app = self.application_id.as_str();
        let checkpoint = task.checkpoint()?;
        let gauge = crate::metrics::RESTORING_TASKS.with_label_values(&[app]);
        gauge.inc();
        let mut restore = TaskRestore {
            stores: Vec::new(),
            restored: 0,
            started: Instant::now(),
            _restoring: RestoringGauge(gauge),
        };
        let task_id = task.id().to_string();
        for store in task.logged_stores(topology) {
            let topic = Topology::changelog_topic(app, &store);
            // Only persistent stores keep their state across a restart.
            let from = topology
                .store_is_persistent(&store)
                .then(|| checkpoint.changelog_offsets.get(&store).copied())
                .flatten();
            let state = self.register(&store, &topic, partition, from)?;
            let remaining = crate::metrics::RESTORE_REMAINING.with_label_values(&[
                app,
                task_id.as_str(),
                store.as_str(),
            ]);
            if let ChangelogState::Registered { start, end } = state {
                remaining.set((end - start).max(0));
            }
            // The restored-records series exists from the first restore, even of nothing.
            task.count_restored(&store, 0);
            restore.stores.push(StoreRestore {
                store,
                topic,
                state,
                uncommitted: 0,
                moved_at: Instant::now(),
                waiting_logged: false,
                remaining,
            });
        }
        Ok(restore)
    }

    /// Steps 3 and 4 for at most `budget`: `Ok(true)` once every store of the task has reached
    /// its changelog's end. What was written is committed locally with its checkpoint every
    /// [`RESTORE_BATCH`] records and when the slice ends, so that a restore stopped anywhere
    /// resumes where it was.
    pub fn restore_for(
        &self,
        task: &mut StreamTask,
        restore: &mut TaskRestore,
        partition: i32,
        budget: Duration,
    ) -> Result<bool> {
        let until = Instant::now() + budget;
        for s in &mut restore.stores {
            loop {
                s.state = match s.state {
                    ChangelogState::Registered { start, end } if start >= end => {
                        ChangelogState::Completed { restored: 0 }
                    }
                    ChangelogState::Registered { start, end } => {
                        // The stall clock runs from the store's first read, not from its
                        // registration (tasks wait their turn).
                        s.moved_at = Instant::now();
                        ChangelogState::Restoring {
                            position: start,
                            end,
                        }
                    }
                    ChangelogState::Restoring { position, end } => {
                        let (position, n) =
                            self.read_until(task, s, partition, (position, end), until)?;
                        restore.restored += n;
                        if position < end {
                            s.state = ChangelogState::Restoring { position, end };
                            // The slice is over: what it wrote is kept with its checkpoint.
                            task.commit_state(&BTreeMap::from([(s.store.clone(), position)]))?;
                            s.uncommitted = 0;
                            return Ok(false);
                        }
                        tracing::debug!(task = %task.id(), store = s.store, to = end, "restored store");
                        ChangelogState::Completed {
                            restored: restore.restored,
                        }
                    }
                    ChangelogState::Completed { .. } => break,
                };
            }
        }
        self.unassign();
        crate::metrics::RESTORE_SECONDS
            .with_label_values(&[self.application_id.as_str()])
            .observe(restore.started.elapsed().as_secs_f64());
        tracing::debug!(task = %task.id(), restored = restore.restored,
            elapsed_ms = restore.started.elapsed().as_millis() as u64, "restored state");
        Ok(true)
    }

    /// Stops fetching (a restore is done, or the task it was for closed).
    pub fn unassign(&self) {
        if self.assigned.borrow_mut().take().is_some() {
            let _ = self.consumer.unassign();
        }
    }

    /// Step 1 and 2: the changelog partition's bounds and where this store starts in it.
    fn register(
        &self,
        store: &str,
        topic: &str,
        partition: i32,
        checkpoint: Option<i64>,
    ) -> Result<ChangelogState> {
        let (start, end) = changelog_bounds(&self.watermarks, store, topic, partition, checkpoint)?;
        Ok(ChangelogState::Registered { start, end })
    }
}

/// Steps 1 and 2 for one store: where it starts in its changelog partition (its checkpoint, or
/// the log start without one) and the partition's end, asked of `watermarks` (a
/// read_uncommitted client). A checkpoint outside the log is [`StateError::Corrupted`].
pub(crate) fn changelog_bounds(
    watermarks: &BaseConsumer,
    store: &str,
    topic: &str,
    partition: i32,
    checkpoint: Option<i64>,
) -> Result<(i64, i64)> {
    let query = || {
        watermarks
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
    Ok((checkpoint.unwrap_or(low), high))
}

impl StoreChangelogReader {
    /// Points the consumer at `topic`-`partition` from `position`, unless it reads there now.
    fn assign(&self, topic: &str, partition: i32, position: i64) -> Result<()> {
        let wanted = (topic.to_string(), partition);
        if self.assigned.borrow().as_ref() == Some(&wanted) {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        // Not `Offset::Beginning`: resolving it costs the client a round of offset queries per
        // partition (full restores ran at a third of the speed).
        tpl.add_partition_offset(topic, partition, Offset::Offset(position))
            .map_err(|e| EngineError::kafka(format!("restoring {topic}-{partition}"), e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| EngineError::kafka(format!("restoring {topic}-{partition}"), e))?;
        *self.assigned.borrow_mut() = Some(wanted);
        Ok(())
    }

    /// Step 3 and 4: reads store `s`'s changelog partition from `position` into its store
    /// until the consumer's position reaches `end` or `until` passes. Returns the position
    /// reached and the records written.
    fn read_until(
        &self,
        task: &mut StreamTask,
        s: &mut StoreRestore,
        partition: i32,
        (mut position, end): (i64, i64),
        until: Instant,
    ) -> Result<(i64, u64)> {
        let topic = s.topic.as_str();
        self.assign(topic, partition, position)?;
        let consumer = &self.consumer;
        let mut restored = 0u64;
        let checkpoint =
            |store: &str, position: i64| BTreeMap::from([(store.to_string(), position)]);
        s.remaining.set(end - position);
        while position < end {
            if self.shutdown.load(Ordering::SeqCst) {
                task.commit_state(&checkpoint(&s.store, position))?;
                return Err(EngineError::TaskMigrated(format!(
                    "closing: restore of {topic}-{partition} stopped at offset {position} of {end}"
                )));
            }
            if Instant::now() >= until {
                break;
            }
            match consumer.poll(Duration::from_millis(10)) {
                Some(Ok(m)) => {
                    task.restore_record(&s.store, m.key().unwrap_or_default(), m.payload())?;
                    restored += 1;
                    s.uncommitted += 1;
                    position = position.max(m.offset() + 1);
                    s.moved_at = Instant::now();
                    if s.uncommitted >= RESTORE_BATCH {
                        task.commit_state(&checkpoint(&s.store, position))?;
                        s.uncommitted = 0;
                        s.remaining.set(end - position);
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
                    s.moved_at = Instant::now();
                }
            }
            if position >= end {
                break;
            }
            if !s.waiting_logged && s.moved_at.elapsed() >= Duration::from_secs(2) {
                tracing::info!(
                    topic,
                    partition,
                    at = position,
                    end,
                    "restore waits (an open transaction on the changelog, or a slow broker)"
                );
                s.waiting_logged = true;
            }
            if s.moved_at.elapsed() >= RESTORE_STALL_TIMEOUT {
                task.commit_state(&checkpoint(&s.store, position))?;
                return Err(EngineError::TaskMigrated(format!(
                    "restoring {topic}-{partition}: stuck at offset {position} of {end} for {RESTORE_STALL_TIMEOUT:?}"
                )));
            }
        }
        task.count_restored(&s.store, restored);
        if position >= end {
            task.commit_state(&checkpoint(&s.store, position))?;
            s.uncommitted = 0;
            s.remaining.set(0);
        } else {
            s.remaining.set(end - position);
        }
        Ok((position, restored))
    }
}
