//! A stream thread: one consumer in the application's group, the tasks of the partitions it is
//! assigned, and one producer committing their work. Once a commit succeeded, each task writes
//! its buffered state changes and checkpoint to RocksDB. Rebalances commit revoked work first and
//! abort lost work; an aborted commit drops the tasks with their uncommitted state, rewinds to
//! the committed offsets and reopens the tasks from their checkpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset};

use crate::config::ProcessingGuarantee;
use crate::error::{EngineError, Result};
use crate::record::Headers as RecordHeaders;
use crate::runtime::producer::{
    self, ChangelogOffsets, CommitError, CommitProducer, InputPosition,
};
use crate::runtime::{lag, restore, Progress, RuntimeConfig};
use crate::task::{InputRecord, StreamTask, TaskId};
use crate::time::WallClock;
use crate::topology::Topology;

/// Whether an error rewinds the thread to its committed offsets (and reopens its tasks) rather
/// than stopping it.
fn rewinds(error: &EngineError) -> bool {
    matches!(
        error.kind(),
        crate::error::ErrorKind::TaskMigrated | crate::error::ErrorKind::Retriable
    )
}

/// Pause before opening tasks again after they failed to open.
const TASK_RETRY_BACKOFF: Duration = Duration::from_millis(500);

struct Inner {
    index: usize,
    topology: Arc<Topology>,
    /// Which sub-topology reads each input topic (computed once: looked up per record).
    subtopology_by_topic: BTreeMap<String, usize>,
    /// Which sub-topology and store each changelog topic belongs to (computed once).
    store_by_changelog: BTreeMap<String, (usize, String)>,
    config: RuntimeConfig,
    tasks: BTreeMap<TaskId, StreamTask>,
    producer: Option<CommitProducer>,
    /// Reads changelogs into tasks being opened; made on the first restore.
    restorer: Option<restore::Restorer>,
    /// Next offset to read per input partition, consumed since the last commit.
    offsets: BTreeMap<(String, i32), InputPosition>,
    assigned: BTreeSet<(String, i32)>,
    progress: Arc<Progress>,
    failure: Option<EngineError>,
    /// This instance's id, kept in its state directory: part of the transactional ids.
    process_id: String,
    /// Set when the application closes (restores watch it).
    shutdown: Arc<AtomicBool>,
    /// Stream time committed with the offsets of the assigned input partitions.
    committed_stream_times: BTreeMap<(String, i32), i64>,
}

impl Inner {
    fn app(&self) -> &str {
        &self.config.streams.application_id
    }

    fn producer(&mut self) -> Result<&mut CommitProducer> {
        if self.producer.is_none() {
            let p = CommitProducer::new(
                &self.config.bootstrap_servers,
                &self.config.streams.application_id,
                &self.process_id,
                self.index,
                self.config.streams.processing_guarantee,
                self.config
                    .streams
                    .extra
                    .get("transaction.timeout.ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(10_000),
            )?;
            self.producer = Some(p);
        }
        self.producer
            .as_mut()
            .ok_or_else(|| EngineError::TaskMigrated("no producer".into()))
    }

    fn task_of(&self, topic: &str, partition: i32) -> Option<TaskId> {
        self.subtopology_by_topic
            .get(topic)
            .map(|&subtopology| TaskId {
                subtopology,
                partition,
            })
    }

    /// Opens the tasks of the assigned partitions that have none yet and restores each from its
    /// checkpoint to the end of its changelogs. Local state that does not fit its changelog
    /// (checkpoint past the end or before the start: the topic was recreated or truncated) is
    /// wiped and restored from the beginning.
    fn create_tasks(&mut self) -> Result<()> {
        let wanted: BTreeSet<TaskId> = self
            .assigned
            .iter()
            .filter_map(|(t, p)| self.task_of(t, *p))
            .collect();
        for id in wanted {
            if self.tasks.contains_key(&id) {
                continue;
            }
            let task = match self.open_task(id) {
                Err(e) if e.kind() == crate::error::ErrorKind::StateCorrupted => {
                    tracing::warn!(task = %id, "wiping local state: {e}");
                    let dir = self
                        .config
                        .streams
                        .state_dir
                        .join(self.app())
                        .join(id.to_string());
                    let _ = std::fs::remove_dir_all(&dir);
                    self.open_task(id)?
                }
                other => other?,
            };
            self.tasks.insert(id, task);
        }
        Ok(())
    }

    fn open_task(&mut self, id: TaskId) -> Result<StreamTask> {
        let mut task = StreamTask::open(
            &self.topology,
            id,
            &self.config.streams,
            WallClock::system(),
            true,
        )?;
        let restorer = match self.restorer.take() {
            Some(r) => r,
            None => restore::Restorer::new(
                &self.config.bootstrap_servers,
                &self.config.streams.application_id,
                Arc::clone(&self.shutdown),
            )?,
        };
        let n = restorer.restore_task(&mut task, &self.topology, id.partition);
        self.restorer = Some(restorer);
        let n = n?;
        Progress::add(&self.progress.restored, n);
        let committed_stream_time = task
            .input_topics()
            .into_iter()
            .filter_map(|t| self.committed_stream_times.get(&(t, id.partition)).copied())
            .max();
        if let Some(t) = committed_stream_time {
            task.advance_stream_time(t);
        }
        task.initialize()?;
        Ok(task)
    }

    /// After a successful commit: every task makes its buffered writes local state, with the
    /// changelog offsets they reach as its checkpoint.
    fn commit_state(&mut self, changelog: &ChangelogOffsets) -> Result<()> {
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
            task.commit_state(by_task.get(id).unwrap_or(&none))?;
        }
        Ok(())
    }

    fn close_tasks(&mut self) {
        for (_, mut task) in std::mem::take(&mut self.tasks) {
            task.close();
        }
    }

    /// Sends what a task produced: sink and repartition records, changelog records, dead letters.
    fn drain(&mut self, id: TaskId) -> std::result::Result<(), CommitError> {
        let Some(task) = self.tasks.get_mut(&id) else {
            return Ok(());
        };
        let produced = task.take_produced();
        let changelog = task.take_changelog();
        let dead = task.take_dead_letters();
        let ts = task.stream_time().max(0);
        let progress = Arc::clone(&self.progress);
        let producer = self
            .producer()
            .map_err(|e| CommitError::Fatal(e.to_string()))?;
        for r in &produced {
            producer.send(r)?;
        }
        for r in &changelog {
            producer.send_changelog(r, id.partition, ts)?;
        }
        for d in &dead {
            producer.send_dead_letter(d)?;
        }
        Progress::add(&progress.records_out, produced.len() as u64);
        Progress::add(&progress.dead_letters, dead.len() as u64);
        Ok(())
    }

    fn process(&mut self, m: &BorrowedMessage<'_>) -> Result<()> {
        let (topic, partition, offset) = (m.topic().to_string(), m.partition(), m.offset());
        let Some(id) = self.task_of(&topic, partition) else {
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
        let input = InputRecord {
            topic: topic.clone(),
            partition,
            offset,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis().unwrap_or(0),
            headers,
        };
        let Some(task) = self.tasks.get_mut(&id) else {
            return Ok(());
        };
        task.process(input)?;
        Progress::add(&self.progress.records_in, 1);
        let stream_time = task.stream_time();
        let position = InputPosition {
            offset: offset + 1,
            stream_time: (stream_time != i64::MIN).then_some(stream_time),
        };
        self.offsets.insert((topic, partition), position);
        self.drain(id)
            .map_err(|e| EngineError::TaskMigrated(e.to_string()))
    }

    fn punctuate(&mut self) -> Result<()> {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Some(task) = self.tasks.get_mut(&id) {
                task.punctuate_wall_clock()?;
            }
            self.drain(id)
                .map_err(|e| EngineError::TaskMigrated(e.to_string()))?;
        }
        Ok(())
    }

    fn needs_commit(&self) -> bool {
        self.tasks.values().any(StreamTask::needs_commit)
    }

    /// Flushes every task and commits outputs, changelogs and offsets together.
    fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> std::result::Result<(), CommitError> {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Some(task) = self.tasks.get_mut(&id) {
                task.flush()
                    .map_err(|e| CommitError::Aborted(e.to_string()))?;
            }
            self.drain(id)?;
        }
        let offsets = std::mem::take(&mut self.offsets);
        let producer = self
            .producer()
            .map_err(|e| CommitError::Fatal(e.to_string()))?;
        match producer.commit(consumer, &offsets) {
            Ok(changelog) => {
                Progress::add(&self.progress.commits, 1);
                // The transaction is in; a failure here leaves local state at the previous
                // checkpoint, and reopening the tasks restores the difference.
                self.commit_state(&changelog)
                    .map_err(|e| CommitError::Aborted(format!("writing local state: {e}")))
            }
            Err(e) => {
                self.offsets = offsets;
                Err(e)
            }
        }
    }

    /// After tasks failed to open (a restore that lost the broker, say): a task-migrated or
    /// retriable error rewinds and opens them again — records of a partition whose task is
    /// missing were skipped, so the consumer must go back to the committed offsets; the next
    /// failure is kept for the next round. Any other error stops the thread.
    fn retry_opening_tasks<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: EngineError,
    ) -> Result<()> {
        if !rewinds(&error) {
            return Err(error);
        }
        std::thread::sleep(TASK_RETRY_BACKOFF);
        match self.recover(
            consumer,
            CommitError::Aborted(format!("opening tasks: {error}")),
        ) {
            Err(e) if rewinds(&e) => {
                self.failure = Some(e);
                Ok(())
            }
            other => other,
        }
    }

    /// After a failed commit: abort, drop the tasks with their uncommitted state, rewind the
    /// consumer to the committed offsets and reopen the tasks from their checkpoints.
    fn recover<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: CommitError,
    ) -> Result<()> {
        tracing::warn!(thread = self.index, "commit failed, aborting: {error}");
        Progress::add(&self.progress.aborts, 1);
        let fatal = match self.producer.as_mut().map(CommitProducer::abort) {
            Some(Err(e)) => Some(e),
            _ => None,
        };
        if matches!(error, CommitError::Fatal(_)) || fatal.is_some() {
            self.producer = None; // a new one is made (and fences the old) on next use
        }
        self.offsets.clear();
        self.close_tasks();
        if let Ok(committed) = consumer.committed(Duration::from_secs(10)) {
            for e in committed.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::Beginning,
                };
                let _ = consumer.seek(e.topic(), e.partition(), offset, Duration::from_secs(10));
            }
        }
        self.create_tasks()
    }
}

struct ThreadContext {
    inner: Arc<Mutex<Inner>>,
    lag: lag::InputLag,
}

impl ClientContext for ThreadContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.lag.record(&statistics);
    }
}

impl ConsumerContext for ThreadContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut inner = self.inner.lock();
            if consumer.assignment_lost() {
                // The group moved on without us: our work must not commit.
                if let Some(p) = inner.producer.as_mut() {
                    let _ = p.abort();
                }
                inner.offsets.clear();
            } else if let Err(e) = inner.commit(consumer) {
                tracing::warn!("commit before revocation failed: {e}");
                if let Some(p) = inner.producer.as_mut() {
                    let _ = p.abort();
                }
                inner.offsets.clear();
            }
            for e in tpl.elements() {
                inner
                    .assigned
                    .remove(&(e.topic().to_string(), e.partition()));
            }
            let revoked = tpl.count() as u64;
            let _ = inner.progress.assigned_partitions.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |n| Some(n.saturating_sub(revoked)),
            );
            inner.close_tasks();
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let committed_stream_times = producer::committed_stream_times(consumer, tpl);
            let mut inner = self.inner.lock();
            inner.committed_stream_times.extend(committed_stream_times);
            for e in tpl.elements() {
                inner
                    .assigned
                    .insert((e.topic().to_string(), e.partition()));
            }
            inner
                .progress
                .assigned_partitions
                .fetch_add(tpl.count() as u64, Ordering::Relaxed);
            if let Err(e) = inner.create_tasks() {
                tracing::error!("cannot create tasks: {e}");
                inner.failure = Some(e);
            }
        }
    }
}

/// Runs thread `index` until `shutdown`.
pub(crate) fn run(
    index: usize,
    topology: Arc<Topology>,
    config: RuntimeConfig,
    process_id: &str,
    shutdown: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> Result<()> {
    let app = config.streams.application_id.clone();
    let commit_every = Duration::from_millis(config.streams.commit_interval_ms);
    let eos = config.streams.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
    let inner = Arc::new(Mutex::new(Inner {
        index,
        topology: Arc::clone(&topology),
        subtopology_by_topic: topology.subtopologies_by_topic(&config.streams.application_id),
        store_by_changelog: topology.stores_by_changelog(&config.streams.application_id),
        config: config.clone(),
        tasks: BTreeMap::new(),
        producer: None,
        restorer: None,
        offsets: BTreeMap::new(),
        assigned: BTreeSet::new(),
        progress: Arc::clone(&progress),
        failure: None,
        process_id: process_id.to_string(),
        shutdown: Arc::clone(&shutdown),
        committed_stream_times: BTreeMap::new(),
    }));
    inner.lock().producer()?;
    let mut consumer_config = ClientConfig::new();
    if let Ok(debug) = std::env::var("EDDY_RDKAFKA_CONSUMER_DEBUG") {
        consumer_config.set("debug", debug);
    }
    let consumer: BaseConsumer<ThreadContext> = consumer_config
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", &app)
        .set("client.id", format!("{app}-{index}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set(
            "isolation.level",
            if eos {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("statistics.interval.ms", lag::STATISTICS_INTERVAL_MS)
        .create_with_context(ThreadContext {
            inner: Arc::clone(&inner),
            lag: lag::InputLag::new(Arc::clone(&progress), eos),
        })
        .map_err(|e| EngineError::Config {
            key: "bootstrap.servers".into(),
            reason: e.to_string(),
        })?;
    let sources: Vec<String> = topology
        .subtopologies()
        .iter()
        .flat_map(|s| {
            s.source_topics
                .iter()
                .map(|t| topology.physical_topic(&app, t))
        })
        .collect();
    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    consumer.subscribe(&refs).map_err(|e| EngineError::Config {
        key: "application.id".into(),
        reason: e.to_string(),
    })?;
    let mut last_commit = Instant::now();
    let outcome = loop {
        if shutdown.load(Ordering::SeqCst) {
            let mut g = inner.lock();
            if let Err(e) = g.commit(&consumer) {
                tracing::warn!("final commit failed: {e}");
                if let Some(p) = g.producer.as_mut() {
                    let _ = p.abort();
                }
            }
            g.close_tasks();
            break Ok(());
        }
        // Up to a batch of records per round, then punctuation and (maybe) a commit.
        let mut g = None;
        let mut stop = None;
        for n in 0..1_000 {
            let message = consumer.poll(if n == 0 {
                Duration::from_millis(20)
            } else {
                Duration::ZERO
            });
            let guard = g.get_or_insert_with(|| inner.lock());
            if let Some(e) = guard.failure.take() {
                // A restore cut short by closing is no failure: the loop closes next.
                if !shutdown.load(Ordering::SeqCst) {
                    stop = guard.retry_opening_tasks(&consumer, e).err().map(Err);
                }
                break;
            }
            match message {
                Some(Ok(m)) => {
                    if let Err(e) = guard.process(&m) {
                        if !rewinds(&e) {
                            stop = Some(Err(e));
                        } else if let Err(e) =
                            guard.recover(&consumer, CommitError::Aborted(e.to_string()))
                        {
                            stop = Some(Err(e));
                        }
                        break;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!("poll: {e}");
                    break;
                }
                None => break,
            }
            // Release the lock between polls: a rebalance callback inside poll takes it.
            g = None;
        }
        if let Some(outcome) = stop {
            break outcome;
        }
        let mut g = g.unwrap_or_else(|| inner.lock());
        if let Some(p) = g.producer.as_ref() {
            p.poll();
        }
        if let Err(e) = g.punctuate() {
            break Err(e);
        }
        if last_commit.elapsed() >= commit_every || g.needs_commit() {
            last_commit = Instant::now();
            let result = g.commit(&consumer);
            if last_commit.elapsed() > Duration::from_millis(500) {
                tracing::warn!(elapsed = ?last_commit.elapsed(), "slow commit");
            }
            if let Err(e) = result {
                if let Err(e) = g.recover(&consumer, e) {
                    break Err(e);
                }
            }
        }
    };
    drop(consumer); // leaves the group
    if let Err(e) = &outcome {
        tracing::error!(thread = index, "stream thread stopped: {e}");
    }
    outcome
}
