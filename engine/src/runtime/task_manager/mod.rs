//! The task manager of one stream thread (Kafka Streams' `TaskManager`): it owns the thread's
//! tasks and its producer, and is the only code that opens, restores, commits, checkpoints,
//! closes (clean or dirty) and rewinds them.
//!
//! - *Open*: a task is created for every sub-topology and assigned partition in the rebalance
//!   callback; the stream thread's loop restores it from its checkpoint to the end of its
//!   changelogs in slices, its input partitions paused, and only then initializes it and lets
//!   it process (`restoring.rs`).
//! - *Commit*: every task flushes, the producer commits outputs, changelogs and consumed offsets
//!   together; then each task writes its buffered state changes and its checkpoint to RocksDB.
//! - *Close clean* (revocation, shutdown): commit first, then close.
//! - *Close dirty* (lost partitions, a fatal error): abort, drop what was not committed, close.
//! - *Rewind* (an aborted commit): close dirty, go back to the committed offsets — certainly, or
//!   the thread stops — and reopen the tasks from their checkpoints. A producer that broke is
//!   replaced first, so that its open transaction is aborted before anything is restored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{EngineError, ErrorKind, Result};
use crate::record::Headers as RecordHeaders;
use crate::runtime::changelog_reader::{StoreChangelogReader, TaskRestore};
use crate::runtime::clients::{block_on, KafkaClients};
use crate::runtime::fetched_lag::{FetchedLag, LagRound, PartitionEnds, Start};
use crate::runtime::stream_thread::ThreadSpec;
use crate::runtime::streams_producer::{
    self, ChangelogOffsets, CommitError, InputPosition, StreamsProducer,
};
use crate::runtime::{Progress, RuntimeConfig};
use crate::task::{InputRecord, StreamTask, TaskId};
use crate::time::WallClock;
use crate::topology::Topology;

mod refused_outputs;
mod restoring;

use refused_outputs::{RefusedOutputs, Verdict};

/// Whether an error rewinds the thread to its committed offsets (and reopens its tasks) rather
/// than stopping it.
pub(crate) fn rewinds(error: &EngineError) -> bool {
    matches!(error.kind(), ErrorKind::TaskMigrated | ErrorKind::Retriable)
}

/// Pause before opening tasks again after they failed to open.
const TASK_RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Records a task may hold fetched but unprocessed per partition (waiting for another of its
/// partitions) before that partition is paused; it is resumed below half of it.
const MAX_BUFFERED_PER_PARTITION: usize = 10_000;

/// How long a rewind tries to read the committed offsets and seek to them before the thread
/// gives up (a thread that cannot rewind must not go on from where it was).
const REWIND_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct TaskManager {
    index: usize,
    topology: Arc<Topology>,
    /// Which sub-topology reads each input topic (computed once: looked up per record).
    subtopology_by_topic: BTreeMap<String, usize>,
    /// Which sub-topology and store each changelog topic belongs to (computed once).
    store_by_changelog: BTreeMap<String, (usize, String)>,
    /// Each store's changelog topic (computed once: looked up per changelog record).
    changelog_by_store: Arc<BTreeMap<String, String>>,
    config: RuntimeConfig,
    clients: KafkaClients,
    tasks: BTreeMap<TaskId, StreamTask>,
    /// Tasks opened but still restoring (`restoring.rs`): they process nothing yet.
    restoring: BTreeMap<TaskId, (StreamTask, TaskRestore)>,
    /// Input partitions paused while their task restores.
    paused_restoring: BTreeSet<(String, i32)>,
    /// The first offset of each input partition that arrived while its task restored (and so
    /// was not processed): the partition is sought back there before it resumes.
    skipped_restoring: BTreeMap<(String, i32), i64>,
    producer: Option<StreamsProducer>,
    /// Reads changelogs into tasks being opened; made on the first restore.
    changelog_reader: Option<StoreChangelogReader>,
    /// Next offset to read per input partition, consumed since the last commit.
    offsets: BTreeMap<(String, i32), InputPosition>,
    assigned: BTreeSet<(String, i32)>,
    progress: Arc<Progress>,
    /// An error met in a rebalance callback, for the thread to handle after `poll`.
    failure: Option<EngineError>,
    /// This instance's id, kept in its state directory: part of the transactional ids.
    process_id: String,
    /// Set when the application closes (restores watch it).
    shutdown: Arc<AtomicBool>,
    /// Stream time committed with the offsets of the assigned input partitions.
    committed_stream_times: BTreeMap<(String, i32), i64>,
    /// Committed offsets of the assigned input partitions (the position a restored task's
    /// state reflects: its changelogs' ends were written with them).
    committed_offsets: BTreeMap<(String, i32), i64>,
    /// The thread is dying on an error: nothing may commit any more, revocations only forget.
    failed: bool,
    /// An output the producer refused for good under `production.exception.handler =
    /// log_and_fail`: the error stops the thread rather than rewinding it (processing the
    /// record again would be refused again).
    refused_output: Option<String>,
    /// Outputs the broker refused at delivery, for their redone transactions.
    refused_outputs: RefusedOutputs,
    /// Committed offsets of repartition partitions not purged yet, and when the last purge ran.
    purgeable: BTreeMap<(String, i32), i64>,
    last_purge: Instant,
    /// Deletes purged records; made on the first purge and kept.
    admin: Option<AdminClient<DefaultClientContext>>,
    /// Input partitions paused because their task's buffer of them is full.
    paused: BTreeSet<(String, i32)>,
    /// The instance's memory budgets, shared by every task of every thread.
    memory: crate::task::StateMemory,
    /// How far each input partition is behind the broker (whether a task waits for it).
    fetched_lag: FetchedLag,
    /// Where running tasks make their persistent stores queryable.
    queryable: Arc<crate::query::QueryableStores>,
    /// This thread's metrics (`/metrics`).
    pub metrics: crate::metrics::thread::ThreadMetrics,
    /// The tasks and dead letters the console shows.
    status: Arc<crate::runtime::status::RuntimeStatus>,
    /// A task is claimed from the standbys before it opens, and released when it closes.
    standbys: Arc<crate::runtime::standby::StandbyRegistry>,
}

/// How a stream thread is named in metrics and in the console.
pub(crate) fn thread_label(index: usize) -> String {
    format!("stream-{index}")
}

impl TaskManager {
    pub fn new(spec: ThreadSpec, ends: Arc<PartitionEnds>) -> Self {
        let ThreadSpec {
            index,
            topology,
            config,
            process_id,
            shutdown,
            progress,
            memory,
            queryable,
            status,
            standbys,
            ..
        } = spec;
        let app = config.streams.application_id.clone();
        let store_by_changelog = topology.stores_by_changelog(&app);
        let changelog_by_store = store_by_changelog
            .iter()
            .map(|(topic, (_, store))| (store.clone(), topic.clone()))
            .collect();
        Self {
            index,
            subtopology_by_topic: topology.subtopologies_by_topic(&app),
            store_by_changelog,
            changelog_by_store: Arc::new(changelog_by_store),
            clients: KafkaClients::new(&config, &topology),
            topology,
            config,
            tasks: BTreeMap::new(),
            restoring: BTreeMap::new(),
            paused_restoring: BTreeSet::new(),
            skipped_restoring: BTreeMap::new(),
            producer: None,
            changelog_reader: None,
            offsets: BTreeMap::new(),
            assigned: BTreeSet::new(),
            progress,
            failure: None,
            process_id,
            shutdown,
            committed_stream_times: BTreeMap::new(),
            committed_offsets: BTreeMap::new(),
            failed: false,
            refused_output: None,
            refused_outputs: RefusedOutputs::default(),
            purgeable: BTreeMap::new(),
            last_purge: Instant::now(),
            admin: None,
            paused: BTreeSet::new(),
            memory,
            fetched_lag: FetchedLag::new(ends),
            queryable,
            metrics: crate::metrics::thread::ThreadMetrics::new(&app, &thread_label(index)),
            status,
            standbys,
        }
    }

    pub fn clients(&self) -> &KafkaClients {
        &self.clients
    }

    fn app(&self) -> &str {
        &self.config.streams.application_id
    }

    /// The thread's producer, made (and its transactions initialized) when there is none.
    pub fn producer(&mut self) -> Result<&mut StreamsProducer> {
        if self.producer.is_none() {
            let changelogs = Arc::new(self.store_by_changelog.keys().cloned().collect());
            let p = StreamsProducer::new(
                &self.clients,
                &self.process_id,
                self.index,
                self.config.streams.processing_guarantee,
                changelogs,
            )?;
            self.producer = Some(p);
        }
        self.producer
            .as_mut()
            .ok_or_else(|| EngineError::TaskMigrated("no producer".into()))
    }

    /// An error a rebalance callback met, for the thread to handle.
    pub fn take_failure(&mut self) -> Option<EngineError> {
        self.failure.take()
    }

    fn task_of(&self, topic: &str, partition: i32) -> Option<TaskId> {
        self.subtopology_by_topic
            .get(topic)
            .map(|&subtopology| TaskId {
                subtopology,
                partition,
            })
    }

    // ---- rebalances (called by the rebalance listener) ----

    /// New partitions: read the stream times committed with their offsets and open their
    /// tasks. An error is kept for the thread (see [`TaskManager::take_failure`]).
    pub fn handle_assignment<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) {
        let committed = streams_producer::committed_inputs(consumer, partitions);
        for e in partitions.elements() {
            let key = (e.topic().to_string(), e.partition());
            let start = match committed.as_ref().map(|c| c.get(&key)) {
                Some(Some(c)) => {
                    if let Some(time) = c.stream_time {
                        self.committed_stream_times.insert(key.clone(), time);
                    }
                    self.note_committed(&key, c.offset);
                    Start::committed(c.offset)
                }
                Some(None) => Start::Earliest,
                None => Start::Unknown,
            };
            self.fetched_lag.started(e.topic(), e.partition(), start);
            self.assigned.insert(key);
        }
        self.progress
            .assigned_partitions
            .fetch_add(partitions.count() as u64, Ordering::Relaxed);
        if self.failed {
            return;
        }
        // A producer dropped by a failed revocation is replaced before anything is restored: its
        // successor's init_transactions aborts the transaction that would hold the restore.
        if let Err(e) = self.producer() {
            tracing::error!("cannot make a producer: {e}");
            self.failure = Some(e);
            return;
        }
        if let Err(e) = self.create_tasks(consumer) {
            tracing::error!("cannot create tasks: {e}");
            self.failure = Some(e);
        }
    }

    /// Partitions taken away in an orderly rebalance: commit what was done, then close. If the
    /// thread is failing, nothing commits.
    pub fn handle_revocation<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) {
        let mut dirty = false;
        if !self.failed {
            if let Err(e) = self.commit(consumer) {
                tracing::warn!("commit before revocation failed: {e}");
                self.abort();
                dirty = true;
                self.fail_on_refusal();
            }
        }
        let revoked = self.tasks_of(partitions);
        self.forget(partitions);
        if dirty || self.failed {
            // The abort dropped every task's uncommitted work, not only the revoked ones'.
            self.close_all(true);
            self.reopen_remaining(consumer);
        } else {
            // Eager assignment revokes everything; cooperative only what moves.
            self.close_tasks(&revoked, false);
        }
    }

    /// The tasks that read any of `partitions`.
    fn tasks_of(&self, partitions: &TopicPartitionList) -> BTreeSet<TaskId> {
        partitions
            .elements()
            .iter()
            .filter_map(|e| self.task_of(e.topic(), e.partition()))
            .collect()
    }

    /// After every task closed dirty while some partitions stay assigned (cooperative
    /// rebalancing): back to their committed offsets, and their tasks open again.
    fn reopen_remaining<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if self.assigned.is_empty() || self.failed {
            return;
        }
        // A producer dropped by a failed abort is replaced first: its successor aborts the
        // transaction the restores would otherwise wait for.
        let reopened = self
            .producer()
            .map(drop)
            .and_then(|()| self.rewind(consumer))
            .and_then(|()| self.create_tasks(consumer));
        if let Err(e) = reopened {
            tracing::warn!("reopening the remaining tasks: {e}");
            self.failure = Some(e);
        }
    }

    /// Partitions the group gave to others without us (a lost session): our work must not
    /// commit.
    pub fn handle_lost<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) {
        self.abort();
        self.fail_on_refusal();
        self.forget(partitions);
        // The abort dropped the uncommitted work of the tasks that stay too.
        self.close_all(true);
        self.reopen_remaining(consumer);
    }

    /// After an abort in a rebalance callback: a refusal its last delivery reports held that
    /// stops the thread (log_and_fail, an unauthorized topic) fails the thread, which stops after
    /// the callback (see take_failure) instead of reopening its tasks and going on.
    fn fail_on_refusal(&mut self) {
        if let Some(reason) = self.refused_output.take() {
            self.failure = Some(EngineError::processing("production", reason));
            self.failed = true;
        }
    }

    fn forget(&mut self, partitions: &TopicPartitionList) {
        for e in partitions.elements() {
            let key = (e.topic().to_string(), e.partition());
            self.fetched_lag.forget(e.topic(), e.partition());
            self.committed_offsets.remove(&key);
            self.paused_restoring.remove(&key);
            self.skipped_restoring.remove(&key);
            self.assigned.remove(&key);
        }
        let revoked = partitions.count() as u64;
        let _ = self.progress.assigned_partitions.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |n| Some(n.saturating_sub(revoked)),
        );
    }

    // ---- opening tasks ----

    /// Opens the tasks of the assigned partitions that have none yet and registers their
    /// restores (`restoring.rs`): the loop restores them, their input partitions paused.
    /// Local state that does not fit its changelog (checkpoint past the end or before the
    /// start: the topic was recreated or truncated) is wiped and restored from the beginning.
    fn create_tasks<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let wanted: BTreeSet<TaskId> = self
            .assigned
            .iter()
            .filter_map(|(t, p)| self.task_of(t, *p))
            .collect();
        for id in wanted {
            if self.tasks.contains_key(&id) || self.restoring.contains_key(&id) {
                continue;
            }
            self.status.set_task(self.task_status(id, "RESTORING"));
            // A standby of the task closes first: its checkpoint is where the restore starts.
            // The claim holds until the task is closed (and any wipe of its directory done).
            self.standbys.claim(id);
            let opened = match self.open_task(id) {
                Err(e) if e.kind() == ErrorKind::StateCorrupted => {
                    tracing::warn!(task = %id, "wiping local state: {e}");
                    self.wipe_local_state(id);
                    self.open_task(id)
                }
                other => other,
            };
            match opened {
                Ok(opened) => {
                    self.restoring.insert(id, opened);
                }
                Err(e) => {
                    self.standbys.release(id);
                    self.status
                        .remove_task(&id.to_string(), &thread_label(self.index));
                    self.pause_restoring(consumer);
                    return Err(e);
                }
            }
        }
        self.pause_restoring(consumer);
        Ok(())
    }

    fn wipe_local_state(&self, id: TaskId) {
        let _ = std::fs::remove_dir_all(crate::task::task_dir(&self.config.streams, id));
    }

    fn task_status(&self, id: TaskId, state: &'static str) -> crate::runtime::status::TaskStatus {
        crate::runtime::status::TaskStatus {
            task: id.to_string(),
            thread: thread_label(self.index),
            state,
            partition: id.partition,
            subtopology: id.subtopology,
        }
    }

    /// Remembers what is committed for an input partition (`None`: nothing).
    fn note_committed(&mut self, partition: &(String, i32), offset: Option<i64>) {
        match offset {
            Some(o) => self.committed_offsets.insert(partition.clone(), o),
            None => self.committed_offsets.remove(partition),
        };
    }

    /// The persistent stores of task `id`'s sub-topology.
    fn persistent_stores(&self, id: TaskId) -> Vec<String> {
        self.topology
            .subtopologies()
            .get(id.subtopology)
            .map(|s| {
                s.stores
                    .iter()
                    .filter(|name| self.topology.store_is_persistent(name))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Opens task `id` (claimed from the standbys) and registers the restore of its stores.
    fn open_task(&mut self, id: TaskId) -> Result<(StreamTask, TaskRestore)> {
        let mut task = StreamTask::open(
            &self.topology,
            id,
            &self.config.streams,
            WallClock::system(),
            true,
            &self.memory,
        )?;
        let topology = Arc::clone(&self.topology);
        let restore = match self.changelog_reader() {
            Ok(reader) => reader.register_task(&mut task, &topology, id.partition),
            Err(e) => Err(e),
        };
        match restore {
            Ok(restore) => Ok((task, restore)),
            Err(e) => {
                task.close();
                Err(e)
            }
        }
    }

    fn changelog_reader(&mut self) -> Result<&StoreChangelogReader> {
        if self.changelog_reader.is_none() {
            self.changelog_reader = Some(StoreChangelogReader::new(
                &self.clients,
                &self.config.streams.application_id,
                Arc::clone(&self.shutdown),
            )?);
        }
        self.changelog_reader
            .as_ref()
            .ok_or_else(|| EngineError::TaskMigrated("no changelog reader".into()))
    }

    /// A restored task's last steps before it processes: the stream time committed with its
    /// offsets, the position its state reflects, and its processors' `init`.
    fn finish_opening(&mut self, id: TaskId, task: &mut StreamTask) -> Result<()> {
        let committed_stream_time = task
            .input_topics()
            .into_iter()
            .filter_map(|t| self.committed_stream_times.get(&(t, id.partition)).copied())
            .max();
        if let Some(t) = committed_stream_time {
            task.advance_stream_time(t);
        }
        // The restored state is the changelogs' ends, which committed with these offsets:
        // queries of it answer at this position.
        let position: BTreeMap<String, i64> = task
            .input_topics()
            .into_iter()
            .filter_map(|t| {
                let offset = self.committed_offsets.get(&(t.clone(), id.partition))?;
                Some((t, *offset))
            })
            .collect();
        if !position.is_empty() {
            task.commit_state_at(&BTreeMap::new(), &position)?;
        }
        task.initialize()
    }

    /// After tasks failed to open (a restore that lost the broker, say): a task-migrated or
    /// retriable error rewinds and opens them again — records of a partition whose task is
    /// missing were skipped, so the consumer must go back to the committed offsets; the next
    /// failure is kept for the next round. Any other error stops the thread.
    pub fn retry_opening_tasks<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: EngineError,
    ) -> Result<()> {
        if !rewinds(&error) {
            return Err(error);
        }
        std::thread::sleep(TASK_RETRY_BACKOFF);
        self.recover_or_retry(
            consumer,
            CommitError::aborted(format!("opening tasks: {error}")),
        )
    }

    /// [`TaskManager::recover`], keeping an error that rewinds (a restore that lost the broker)
    /// for the next round instead of stopping the thread.
    pub fn recover_or_retry<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: CommitError,
    ) -> Result<()> {
        self.note_refusals();
        if let Some(reason) = self.refused_output.take() {
            // A commit's flush met the refusal: stop, as processing would have.
            return Err(EngineError::processing("production", reason));
        }
        match self.recover(consumer, error) {
            Err(e) if rewinds(&e) => {
                self.failure = Some(e);
                Ok(())
            }
            other => other,
        }
    }

    // ---- processing ----

    /// Buffers a fetched record in its task (see [`TaskManager::process_buffered`]); a partition
    /// whose buffer is full is paused until its task has worked it off.
    pub fn add_record<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        m: &BorrowedMessage<'_>,
    ) -> Result<()> {
        let (topic, partition) = (m.topic(), m.partition());
        self.fetched_lag.delivered(topic, partition, m.offset());
        let Some(id) = self.task_of(topic, partition) else {
            return Ok(());
        };
        let Some(task) = self.tasks.get_mut(&id) else {
            if self.restoring.contains_key(&id) {
                // Fetched before its pause took hold: processed once the task runs.
                self.skipped_restoring
                    .entry((topic.to_string(), partition))
                    .or_insert(m.offset());
            }
            return Ok(());
        };
        let mut headers = RecordHeaders::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                headers
                    .0
                    .push((header.key.to_string(), header.value.map(<[u8]>::to_vec)));
            }
        }
        task.add_record(InputRecord {
            topic: topic.to_string(),
            partition,
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis().unwrap_or(0),
            headers,
        })?;
        let full = task.buffered_in(topic) >= MAX_BUFFERED_PER_PARTITION;
        let key = (topic.to_string(), partition);
        if full && !self.paused.contains(&key) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            match consumer.pause(&tpl) {
                Ok(()) => {
                    tracing::debug!(topic, partition, "buffer full: partition paused");
                    self.paused.insert(key);
                }
                Err(e) => tracing::warn!(topic, partition, "cannot pause a full partition: {e}"),
            }
        }
        Ok(())
    }

    /// Resumes paused partitions whose task has worked off half its buffer of them (or is gone:
    /// a revoked or rewound partition must not stay paused when it comes back).
    fn resume_drained<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let drained: Vec<(String, i32)> = self
            .paused
            .iter()
            .filter(|(topic, partition)| {
                self.task_of(topic, *partition)
                    .and_then(|id| self.tasks.get(&id))
                    .is_none_or(|t| t.buffered_in(topic) < MAX_BUFFERED_PER_PARTITION / 2)
            })
            .cloned()
            .collect();
        for (topic, partition) in drained {
            if self.paused_restoring.contains(&(topic.clone(), partition)) {
                // Its task restores: it stays paused until the task runs.
                self.paused.remove(&(topic, partition));
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, partition);
            if let Err(e) = consumer.resume(&tpl) {
                tracing::debug!(topic, partition, "resuming: {e}");
            }
            self.paused.remove(&(topic, partition));
        }
    }

    /// Runs every buffered record that is ready through its task — in timestamp order across a
    /// task's partitions, waiting for an empty one while it has records at the broker (see
    /// `partition_group.rs`) — and sends what the tasks produced.
    pub fn process_buffered<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        let processed = self.process_ready(consumer);
        self.resume_drained(consumer);
        processed
    }

    fn process_ready<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let now = Instant::now();
        let max_idle_ms = self.config.streams.max_task_idle_ms;
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        let mut round = LagRound::default();
        for id in ids {
            while let Some(task) = self.tasks.get_mut(&id) {
                let fetched_lag = &self.fetched_lag;
                let mut lag = |topic: &str| round.lag(fetched_lag, consumer, topic, id.partition);
                let Some((topic, partition, offset)) =
                    task.process_next(now, max_idle_ms, &mut lag)?
                else {
                    break;
                };
                Progress::add(&self.progress.records_in, 1);
                self.metrics.processed.inc();
                let stream_time = task.stream_time();
                let position = InputPosition {
                    offset: offset + 1,
                    stream_time: (stream_time != i64::MIN).then_some(stream_time),
                };
                self.offsets.insert((topic, partition), position);
                self.drain(id).map_err(|e| self.stop_on_refusal(e))?;
            }
        }
        Ok(())
    }

    /// Fires the wall-clock punctuations that are due and sends what they produced.
    pub fn punctuate(&mut self) -> Result<()> {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Some(task) = self.tasks.get_mut(&id) {
                task.punctuate_wall_clock()?;
            }
            self.drain(id).map_err(|e| self.stop_on_refusal(e))?;
        }
        Ok(())
    }

    /// A failed drain's error: the refusal that stops the thread, if that is what failed.
    fn stop_on_refusal(&mut self, error: CommitError) -> EngineError {
        match self.refused_output.take() {
            Some(reason) => EngineError::processing("production", reason),
            None => error.into(),
        }
    }

    /// Serves the producer's delivery reports.
    pub fn poll_producer(&self) {
        if let Some(p) = self.producer.as_ref() {
            p.poll();
        }
    }

    /// Sends what a task produced: sink and repartition records, changelog records, dead letters.
    fn drain(&mut self, id: TaskId) -> std::result::Result<(), CommitError> {
        let Some(task) = self.tasks.get_mut(&id) else {
            return Ok(());
        };
        let produced = task.take_produced();
        let changelog = task.take_changelog();
        let mut dead = task.take_dead_letters();
        let progress = Arc::clone(&self.progress);
        let changelog_by_store = Arc::clone(&self.changelog_by_store);
        let handler = self.config.streams.production_exception_handler;
        self.producer()
            .map_err(|e| CommitError::fatal(e.to_string()))?;
        let Some(producer) = self.producer.as_mut() else {
            return Err(CommitError::fatal("no producer"));
        };
        let ledger = &mut self.refused_outputs;
        if !(produced.is_empty() && changelog.is_empty() && dead.is_empty()) {
            ledger.transaction_started();
        }
        let (mut refused, mut refusal) = (0, None);
        for r in &produced {
            let fingerprint = streams_producer::fingerprint(r);
            let (code, by) = match ledger.verdict(fingerprint) {
                Verdict::Send => (producer.send(r)?, "producer"),
                Verdict::SendAlone => {
                    // Only once the records before it are acknowledged: a refusal of one of
                    // them must not confirm this one.
                    producer.flush_before_alone()?;
                    ledger.sending_alone(fingerprint);
                    let code = producer.send_alone(r)?;
                    if code.is_none() {
                        ledger.delivered_alone(fingerprint);
                    }
                    (code, "producer")
                }
                Verdict::Refused(code) => {
                    ledger.handled(fingerprint);
                    (Some(code), "broker")
                }
            };
            let Some(code) = code else {
                continue;
            };
            let error = format!(
                "the {by} refuses the output to `{}` ({} bytes): {code}",
                r.topic,
                r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len)
            );
            match handler {
                crate::ExceptionHandler::LogAndFail => {
                    let error = format!("{error} (production.exception.handler=log_and_fail)");
                    refusal = Some(error);
                    break;
                }
                crate::ExceptionHandler::LogAndContinue => {
                    tracing::warn!(
                        "{error}: dead-lettered (production.exception.handler=log_and_continue)"
                    );
                    refused += 1;
                    // The key and the reason; the value is what the producer refused.
                    dead.push(crate::task::collector::DeadLetter {
                        topic: r.topic.clone(),
                        partition: r.partition.unwrap_or(-1),
                        offset: -1,
                        key: r.key.clone(),
                        value: None,
                        timestamp: r.timestamp,
                        error,
                    });
                }
            }
        }
        if let Some(error) = refusal {
            self.refused_output = Some(error.clone());
            return Err(CommitError::fatal(error));
        }
        let producer = self
            .producer()
            .map_err(|e| CommitError::fatal(e.to_string()))?;
        // A changelog record or a dead letter the producer refuses cannot be skipped (the
        // state would not be its changelog; the record would vanish): the thread stops.
        let refusal = |what: String, e: &CommitError| {
            streams_producer::refused(e).map(|code| format!("the producer refuses {what}: {code}"))
        };
        let mut stop = None;
        for r in &changelog {
            let topic = changelog_by_store.get(&r.store).ok_or_else(|| {
                CommitError::fatal(format!("store `{}` has no changelog", r.store))
            })?;
            if let Err(e) = producer.send_changelog(topic, r, id.partition) {
                match refusal(format!("a change of store `{}`", r.store), &e) {
                    None => return Err(e),
                    Some(reason) => {
                        stop = Some((reason, e));
                        break;
                    }
                }
            }
        }
        if stop.is_none() {
            for d in &dead {
                if let Err(e) = producer.send_dead_letter(d) {
                    match refusal(format!("a dead letter of {}", d.topic), &e) {
                        None => return Err(e),
                        Some(reason) => {
                            stop = Some((reason, e));
                            break;
                        }
                    }
                }
            }
        }
        if let Some((reason, e)) = stop {
            self.refused_output = Some(reason);
            return Err(e);
        }
        Progress::add(&progress.records_out, (produced.len() - refused) as u64);
        Progress::add(&progress.dead_letters, dead.len() as u64);
        let now_ms = if dead.is_empty() {
            0
        } else {
            chrono::Utc::now().timestamp_millis()
        };
        for d in &dead {
            self.status
                .dead_lettered(crate::runtime::status::DeadLetterNote {
                    at_ms: now_ms,
                    topic: d.topic.clone(),
                    partition: d.partition,
                    offset: d.offset,
                    reason: d.error.clone(),
                });
            crate::metrics::DEAD_LETTERS
                .with_label_values(&[
                    self.config.streams.application_id.as_str(),
                    d.topic.as_str(),
                ])
                .inc();
        }
        Ok(())
    }

    // ---- committing ----

    pub fn needs_commit(&self) -> bool {
        self.tasks.values().any(StreamTask::needs_commit)
    }

    /// Flushes every task and commits outputs, changelogs and offsets together; then the tasks
    /// make their buffered writes local state, and consumed repartition records are purged.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> std::result::Result<(), CommitError> {
        if self.failed {
            return Err(CommitError::aborted("the thread is failing"));
        }
        if self.refused_output.is_some() {
            // Noted in an abort that went on (a lost partition's): nothing commits after it.
            return Err(CommitError::aborted("an output was refused for good"));
        }
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Some(task) = self.tasks.get_mut(&id) {
                task.flush()
                    .map_err(|e| CommitError::aborted(e.to_string()))?;
            }
            self.drain(id)?;
        }
        let offsets = std::mem::take(&mut self.offsets);
        let producer = self
            .producer()
            .map_err(|e| CommitError::fatal(e.to_string()))?;
        match producer.commit(consumer, &offsets) {
            Ok(changelog) => {
                Progress::add(&self.progress.commits, 1);
                self.refused_outputs.committed();
                if self.config.streams.processing_guarantee
                    == crate::ProcessingGuarantee::ExactlyOnceV2
                {
                    self.metrics.transactions_committed.inc();
                }
                self.note_purgeable(&offsets);
                for (partition, position) in &offsets {
                    self.committed_offsets
                        .insert(partition.clone(), position.offset);
                }
                // A task reopened after a later abort starts from the stream time committed now.
                for (partition, position) in &offsets {
                    if let Some(t) = position.stream_time {
                        let known = self
                            .committed_stream_times
                            .entry(partition.clone())
                            .or_insert(t);
                        *known = (*known).max(t);
                    }
                }
                // The transaction is in; a failure here leaves local state at the previous
                // checkpoint, and reopening the tasks restores the difference.
                self.commit_state(&changelog, &offsets)
                    .map_err(|e| CommitError::aborted(format!("writing local state: {e}")))?;
                self.purge_repartition_topics();
                Ok(())
            }
            Err(e) => {
                self.offsets = offsets;
                Err(e)
            }
        }
    }

    /// After a successful commit: every task makes its buffered writes local state, with the
    /// changelog offsets they reach as its checkpoint.
    fn commit_state(
        &mut self,
        changelog: &ChangelogOffsets,
        inputs: &BTreeMap<(String, i32), InputPosition>,
    ) -> Result<()> {
        let mut inputs_by_task: BTreeMap<TaskId, BTreeMap<String, i64>> = BTreeMap::new();
        for ((topic, partition), position) in inputs {
            if let Some(id) = self.task_of(topic, *partition) {
                let offsets = inputs_by_task.entry(id).or_default();
                offsets.insert(topic.clone(), position.offset);
            }
        }
        let mut by_task: BTreeMap<TaskId, BTreeMap<String, i64>> = BTreeMap::new();
        for ((topic, partition), &offset) in changelog {
            if let Some((subtopology, store)) = self.store_by_changelog.get(topic) {
                let id = TaskId {
                    subtopology: *subtopology,
                    partition: *partition,
                };
                by_task.entry(id).or_default().insert(store.clone(), offset);
            }
        }
        let none = BTreeMap::new();
        for (id, task) in &mut self.tasks {
            let changelog = by_task.get(id).unwrap_or(&none);
            task.commit_state_at(changelog, inputs_by_task.get(id).unwrap_or(&none))?;
        }
        Ok(())
    }

    fn note_purgeable(&mut self, committed: &BTreeMap<(String, i32), InputPosition>) {
        let app = self.app().to_string();
        for ((topic, partition), position) in committed {
            if self.topology.is_repartition_topic(&app, topic) {
                self.purgeable
                    .insert((topic.clone(), *partition), position.offset);
            }
        }
    }

    /// Deletes the records of repartition topics below the committed offsets, every
    /// `repartition.purge.interval.ms` (Kafka Streams does the same: nothing else reads them).
    /// A failure only delays the purge.
    fn purge_repartition_topics(&mut self) {
        let interval = Duration::from_millis(self.config.streams.repartition_purge_interval_ms);
        if self.purgeable.is_empty() || self.last_purge.elapsed() < interval {
            return;
        }
        self.last_purge = Instant::now();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.purgeable {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        if self.admin.is_none() {
            match self.clients.admin() {
                Ok(admin) => self.admin = Some(admin),
                Err(e) => return tracing::debug!("purging repartition topics: {e}"),
            }
        }
        let Some(admin) = &self.admin else { return };
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
        match block_on(admin.delete_records(&tpl, &options)) {
            Ok(_) => self.purgeable.clear(),
            Err(e) => tracing::debug!("purging repartition topics: {e}"),
        }
    }

    /// Aborts the open transaction; a producer whose abort fails is dropped (a new one is made,
    /// and fences it, before the next restore or send).
    fn abort(&mut self) {
        self.offsets.clear();
        let mut broken = false;
        if let Some(p) = self.producer.as_mut() {
            if p.in_transaction() {
                self.metrics.transactions_aborted.inc();
            }
            if let Err(e) = p.abort() {
                tracing::warn!("abort failed, replacing the producer: {e}");
                broken = true;
            }
        }
        // The abort served the last delivery reports.
        self.note_refusals();
        if broken {
            self.producer = None;
        }
    }

    /// Hands the deliveries the broker refused for good to the ledger of refused outputs; a
    /// refusal that must stop the thread becomes its refused output (see `refused_outputs.rs`).
    fn note_refusals(&mut self) {
        let Some(p) = self.producer.as_ref() else {
            return;
        };
        let refused = p.take_refused();
        let handler = self.config.streams.production_exception_handler;
        let changelogs = &self.store_by_changelog;
        let is_output = |topic: &str| !changelogs.contains_key(topic) && topic != crate::DLQ_TOPIC;
        if let Err(reason) = self
            .refused_outputs
            .note_aborted(refused, handler, is_output)
        {
            tracing::error!("{reason}");
            self.refused_output.get_or_insert(reason);
        }
    }

    // ---- closing ----

    /// Closes every task. Clean (after a commit) or dirty (their uncommitted writes are dropped
    /// with them: local state stays at the last checkpoint).
    fn close_all(&mut self, dirty: bool) {
        self.close_restoring();
        let all: BTreeSet<TaskId> = self.tasks.keys().copied().collect();
        self.close_tasks(&all, dirty);
    }

    /// Closes the tasks `ids` (running or restoring).
    fn close_tasks(&mut self, ids: &BTreeSet<TaskId>, dirty: bool) {
        for id in ids {
            if let Some((mut task, _restore)) = self.restoring.remove(id) {
                task.close();
                // Its RocksDB closes before a standby may open it.
                drop(task);
                self.standbys.release(*id);
                self.status
                    .remove_task(&id.to_string(), &thread_label(self.index));
            }
        }
        if self.restoring.is_empty() {
            if let Some(reader) = &self.changelog_reader {
                reader.unassign();
            }
        }
        let closing: Vec<(TaskId, StreamTask)> = ids
            .iter()
            .filter_map(|id| self.tasks.remove(id).map(|t| (*id, t)))
            .collect();
        Progress::add(&self.progress.tasks_closed, closing.len() as u64);
        for (id, mut task) in closing {
            if dirty {
                tracing::debug!(task = %id, "closing dirty");
            }
            if let Some(db) = task.rocksdb() {
                self.queryable
                    .deregister(&self.persistent_stores(id), id.partition, db);
            }
            task.close();
            drop(task);
            self.standbys.release(id);
            self.status
                .remove_task(&id.to_string(), &thread_label(self.index));
        }
    }

    /// Shutdown: commit what was done (or abort if the commit fails), then close.
    pub fn close_clean<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if let Err(e) = self.commit(consumer) {
            tracing::warn!("final commit failed: {e}");
            self.abort();
            self.close_all(true);
        } else {
            self.close_all(false);
        }
    }

    /// A fatal error: nothing done since the last commit may become visible, now or when the
    /// consumer leaves the group (its revocation callback must not commit). As Kafka Streams
    /// closes its tasks dirty.
    pub fn close_dirty(&mut self) {
        self.failed = true;
        self.abort();
        self.close_all(true);
    }

    // ---- rewinding ----

    /// After a failed commit: abort, drop the tasks with their uncommitted state, replace a
    /// broken producer, rewind the consumer to the committed offsets and reopen the tasks from
    /// their checkpoints.
    pub fn recover<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: CommitError,
    ) -> Result<()> {
        tracing::warn!(thread = self.index, "commit failed, aborting: {error}");
        Progress::add(&self.progress.aborts, 1);
        if error.is_fatal() {
            // What its deliveries refused is kept; the producer is not.
            self.note_refusals();
            self.producer = None;
        }
        self.abort();
        self.close_all(true);
        if let Some(reason) = self.refused_output.take() {
            // The abort's last delivery reports held a refusal that stops the thread.
            return Err(EngineError::processing("production", reason));
        }
        // The new producer's init_transactions aborts the broken one's open transaction, which
        // would otherwise hold every restore of its changelogs until transaction.timeout.ms.
        self.producer()?;
        self.rewind(consumer)?;
        self.create_tasks(consumer)
    }

    /// Seeks every assigned partition to its committed offset (its beginning when none is
    /// committed, as `auto.offset.reset=earliest`). It must succeed: a thread that went on from
    /// where it was after an abort would skip the aborted records. Retries for
    /// [`REWIND_TIMEOUT`], then stops the thread.
    fn rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        if self.assigned.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &self.assigned {
            tpl.add_partition(topic, *partition);
        }
        let until = Instant::now() + REWIND_TIMEOUT;
        loop {
            match self.try_rewind(consumer, &tpl) {
                Ok(starts) => {
                    for ((topic, partition), offset) in starts {
                        let start = Start::committed(offset);
                        self.fetched_lag.started(&topic, partition, start);
                        self.note_committed(&(topic, partition), offset);
                    }
                    return Ok(());
                }
                Err(e) if Instant::now() < until && !self.shutdown.load(Ordering::SeqCst) => {
                    tracing::warn!("rewind failed, trying again: {e}");
                    std::thread::sleep(TASK_RETRY_BACKOFF);
                }
                Err(e) => {
                    return Err(match e {
                        EngineError::Kafka {
                            operation, source, ..
                        } => EngineError::kafka_fatal(operation, source),
                        other => other,
                    })
                }
            }
        }
    }

    fn try_rewind<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) -> Result<Vec<((String, i32), Option<i64>)>> {
        let committed = consumer
            .committed_offsets(partitions.clone(), Duration::from_secs(10))
            .map_err(|e| EngineError::kafka("rewind: reading committed offsets", e))?;
        let mut starts = Vec::new();
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            consumer
                .seek(e.topic(), e.partition(), offset, Duration::from_secs(10))
                .map_err(|err| {
                    EngineError::kafka(
                        format!(
                            "rewind: seeking {}-{} to {offset:?}",
                            e.topic(),
                            e.partition()
                        ),
                        err,
                    )
                })?;
            let start = match offset {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            starts.push(((e.topic().to_string(), e.partition()), start));
        }
        Ok(starts)
    }
}
