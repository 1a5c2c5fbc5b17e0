//! Standby replicas (`num.standby.replicas`, Kafka Streams' standby tasks): warm copies of
//! stateful tasks that run on other instances, kept by tailing their changelogs, so that a task
//! that moves here restores only what its copy had not read yet.
//!
//! 1. **Placement**: every [`REFRESH_INTERVAL`] the updater reads the group's membership; once
//!    it is stable, every instance derives the same standby placement from it
//!    (`placement.rs`), so that no instance has to tell another.
//! 2. **Open**: a standby task is opened on the task's own state directory (where an earlier
//!    active or standby incarnation left it); each persistent logged store starts at its
//!    checkpoint, checked against its changelog's bounds as a restore checks it: a checkpoint
//!    outside the log wipes the local state and the copy starts from the log's start.
//! 3. **Tail**: one read_committed consumer reads every standby's changelog partitions and
//!    writes their records to the stores; every `commit.interval.ms` (and every
//!    [`COMMIT_EVERY_RECORDS`]) a standby commits them locally with the offsets reached as its
//!    checkpoint, so its local state is always a committed prefix of its changelogs.
//! 4. **Hand-over**: before a stream thread opens a task it claims it
//!    ([`StandbyRegistry::claim`]): a standby of the task is committed and closed first (one
//!    RocksDB owner at a time), and the active task's restore starts at the standby's
//!    checkpoint. In-memory stores have no standby: they restore in full, as after a restart.
//! 5. A task closed here (revoked, or its thread gone) is released
//!    ([`StandbyRegistry::release`]); from the next refresh it may be kept as a standby.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{EngineError, ErrorKind, Result};
use crate::runtime::changelog_reader::changelog_bounds;
use crate::runtime::clients::KafkaClients;
use crate::runtime::status::{RuntimeStatus, TaskStatus};
use crate::runtime::{Progress, RuntimeConfig};
use crate::task::{StreamTask, TaskId};
use crate::time::WallClock;
use crate::topology::Topology;

mod placement;

/// How often the updater reads the group's membership.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Records a standby writes before it commits locally, whatever the interval.
const COMMIT_EVERY_RECORDS: u64 = 10_000;

/// What the console and `KafkaStreams::standby_tasks` call a standby's thread.
pub(crate) const STANDBY_THREAD: &str = "standby";

/// One standby task: its stores and how far each has read its changelog.
struct StandbyTask {
    task: StreamTask,
    /// Persistent logged store → (changelog topic, next offset to read).
    stores: BTreeMap<String, (String, i64)>,
    uncommitted: u64,
}

impl StandbyTask {
    /// Step 3's local commit: the writes so far, with the offsets reached as the checkpoint.
    fn commit(&mut self) -> Result<()> {
        if self.uncommitted == 0 {
            return Ok(());
        }
        let positions = self
            .stores
            .iter()
            .map(|(store, (_, next))| (store.clone(), *next))
            .collect();
        self.task.commit_state(&positions)?;
        self.uncommitted = 0;
        Ok(())
    }

    /// Commits and closes; a failed commit leaves the state at its last checkpoint.
    fn close(mut self) {
        if let Err(e) = self.commit() {
            tracing::warn!(task = %self.task.id(), "standby commit before close failed: {e}");
        }
        self.task.close();
    }
}

#[derive(Default)]
struct Standbys {
    /// Tasks the stream threads of this instance have open (restoring or running), with how
    /// many claims each has (a thread that lost a task may release it after another claimed it).
    active: BTreeMap<TaskId, usize>,
    tasks: BTreeMap<TaskId, StandbyTask>,
    /// Standbys the updater is opening outside the lock (their bounds take broker round
    /// trips): a claim of one waits until it is open.
    opening: BTreeSet<TaskId>,
    /// The set of standbys changed: the updater points its consumer again.
    changed: bool,
}

/// Which tasks this instance runs and which it keeps standbys of, shared by its stream threads
/// and its standby updater (steps 4 and 5).
pub(crate) struct StandbyRegistry {
    inner: Mutex<Standbys>,
    /// Signalled when a standby being opened is in place.
    opened: Condvar,
    status: Arc<RuntimeStatus>,
}

impl StandbyRegistry {
    pub fn new(status: Arc<RuntimeStatus>) -> Self {
        Self {
            inner: Mutex::default(),
            opened: Condvar::new(),
            status,
        }
    }

    /// Step 4: a stream thread opens `id`; a standby of it commits and closes first.
    pub fn claim(&self, id: TaskId) {
        let mut standbys = self.inner.lock();
        while standbys.opening.contains(&id) {
            self.opened.wait(&mut standbys);
        }
        *standbys.active.entry(id).or_default() += 1;
        if let Some(standby) = standbys.tasks.remove(&id) {
            tracing::info!(task = %id, "the standby task becomes active");
            standby.close();
            standbys.changed = true;
            self.status.remove_task(&id.to_string(), STANDBY_THREAD);
        }
    }

    /// Step 5: a stream thread no longer runs `id` here (call it once the task's RocksDB is
    /// closed and any wipe of its directory done).
    pub fn release(&self, id: TaskId) {
        let mut standbys = self.inner.lock();
        if let Some(claims) = standbys.active.get_mut(&id) {
            *claims -= 1;
            if *claims == 0 {
                standbys.active.remove(&id);
            }
        }
    }

    /// The standby tasks held now.
    pub fn standby_tasks(&self) -> Vec<TaskId> {
        self.inner.lock().tasks.keys().copied().collect()
    }
}

/// What the standby updater of an instance needs.
pub(crate) struct StandbySpec {
    pub topology: Arc<Topology>,
    pub config: RuntimeConfig,
    pub process_id: String,
    pub shutdown: Arc<AtomicBool>,
    pub progress: Arc<Progress>,
    pub memory: crate::task::StateMemory,
    pub status: Arc<RuntimeStatus>,
    pub registry: Arc<StandbyRegistry>,
}

/// Starts the instance's standby updater (when `num.standby.replicas` > 0); it stops, closing
/// its standbys with their checkpoints, when `shutdown` is set.
pub(crate) fn start(spec: StandbySpec) -> Result<JoinHandle<()>> {
    let clients = KafkaClients::new(&spec.config, &spec.topology);
    let updater = StandbyUpdater {
        tail: clients.standby_consumer()?,
        membership: clients.restore_consumer("read_uncommitted")?,
        subtopology_by_topic: spec
            .topology
            .subtopologies_by_topic(&spec.config.streams.application_id),
        store_by_changelog: spec
            .topology
            .stores_by_changelog(&spec.config.streams.application_id),
        stateful: stateful_subtopologies(&spec.topology),
        last_refresh: None,
        last_commit: Instant::now(),
        spec,
    };
    let name = format!("{}-standby", updater.app());
    std::thread::Builder::new()
        .name(name)
        .spawn(move || updater.run())
        .map_err(|e| EngineError::Config {
            key: "num.standby.replicas".into(),
            reason: format!("cannot start the standby updater: {e}"),
        })
}

/// Sub-topologies with a persistent logged store: the ones a standby can keep warm.
fn stateful_subtopologies(topology: &Topology) -> BTreeSet<usize> {
    topology
        .subtopologies()
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.stores
                .iter()
                .any(|name| topology.store_is_persistent(name) && topology.store_is_logged(name))
        })
        .map(|(i, _)| i)
        .collect()
}

/// A changelog record read by the tail consumer, owned (it is applied under the registry's lock).
struct TailRecord {
    topic: String,
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

struct StandbyUpdater {
    spec: StandbySpec,
    /// Reads every standby's changelog partitions, read_committed (step 3).
    tail: BaseConsumer,
    /// Describes the group and asks for changelog bounds (steps 1 and 2).
    membership: BaseConsumer,
    subtopology_by_topic: BTreeMap<String, usize>,
    store_by_changelog: BTreeMap<String, (usize, String)>,
    stateful: BTreeSet<usize>,
    last_refresh: Option<Instant>,
    last_commit: Instant,
}

impl StandbyUpdater {
    fn app(&self) -> &str {
        &self.spec.config.streams.application_id
    }

    fn run(mut self) {
        let commit_every = Duration::from_millis(self.spec.config.streams.commit_interval_ms);
        while !self.spec.shutdown.load(Ordering::SeqCst) {
            if self
                .last_refresh
                .is_none_or(|at| at.elapsed() >= REFRESH_INTERVAL)
            {
                self.last_refresh = Some(Instant::now());
                if let Err(e) = self.refresh() {
                    tracing::debug!("standby placement not refreshed: {e}");
                }
            }
            self.reassign_if_changed();
            let batch = self.poll_batch();
            self.apply(batch);
            if self.last_commit.elapsed() >= commit_every {
                self.last_commit = Instant::now();
                self.commit_all();
            }
        }
        self.close_all();
    }

    /// Steps 1 and 2: the standbys this instance should keep now, opened or closed to match.
    fn refresh(&self) -> Result<()> {
        let subtopology_by_topic = &self.subtopology_by_topic;
        let Some(membership) = placement::membership(&self.membership, self.app(), |t, p| {
            subtopology_by_topic.get(t).map(|&subtopology| TaskId {
                subtopology,
                partition: p,
            })
        })?
        else {
            return Ok(());
        };
        let me = self.spec.process_id.as_str();
        let mut wanted = placement::standbys_of(
            me,
            &membership,
            |t| self.stateful.contains(&t.subtopology),
            self.spec.config.streams.num_standby_replicas,
        );
        if let Some(mine) = membership.get(me) {
            wanted.retain(|t| !mine.contains(t));
        }
        let registry = &self.spec.registry;
        let mut standbys = registry.inner.lock();
        let gone: Vec<TaskId> = standbys
            .tasks
            .keys()
            .filter(|id| !wanted.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(standby) = standbys.tasks.remove(&id) {
                tracing::debug!(task = %id, "standby task closed: placed elsewhere now");
                standby.close();
                self.spec
                    .status
                    .remove_task(&id.to_string(), STANDBY_THREAD);
                standbys.changed = true;
            }
        }
        let opening: Vec<TaskId> = wanted
            .into_iter()
            .filter(|id| !standbys.active.contains_key(id) && !standbys.tasks.contains_key(id))
            .collect();
        standbys.opening.extend(opening.iter().copied());
        drop(standbys);
        for id in opening {
            // Outside the lock: a claim of another task goes on meanwhile, one of this task
            // waits (it is in `opening`).
            let opened = self.open(id);
            let mut standbys = registry.inner.lock();
            standbys.opening.remove(&id);
            registry.opened.notify_all();
            match opened {
                Ok(standby) => {
                    tracing::debug!(task = %id, "standby task opened");
                    standbys.tasks.insert(id, standby);
                    standbys.changed = true;
                    self.spec.status.set_task(TaskStatus {
                        task: id.to_string(),
                        thread: STANDBY_THREAD.to_string(),
                        state: "STANDBY",
                        partition: id.partition,
                        subtopology: id.subtopology,
                    });
                }
                Err(e) => tracing::warn!(task = %id, "cannot open a standby task: {e}"),
            }
        }
        Ok(())
    }

    /// Step 2 for task `id`, which is in `opening` (so that no stream thread opens it
    /// meanwhile).
    fn open(&self, id: TaskId) -> Result<StandbyTask> {
        match self.try_open(id) {
            Err(e) if e.kind() == ErrorKind::StateCorrupted => {
                tracing::warn!(task = %id, "wiping local state: {e}");
                let _ =
                    std::fs::remove_dir_all(crate::task::task_dir(&self.spec.config.streams, id));
                self.try_open(id)
            }
            other => other,
        }
    }

    fn try_open(&self, id: TaskId) -> Result<StandbyTask> {
        let topology = &self.spec.topology;
        let mut task = StreamTask::open(
            topology,
            id,
            &self.spec.config.streams,
            WallClock::system(),
            true,
            &self.spec.memory,
        )?;
        let checkpoint = match task.checkpoint() {
            Ok(c) => c,
            Err(e) => {
                task.close();
                return Err(e);
            }
        };
        let mut stores = BTreeMap::new();
        for store in task.logged_stores(topology) {
            if !topology.store_is_persistent(&store) {
                continue;
            }
            let topic = Topology::changelog_topic(self.app(), &store);
            let from = checkpoint.changelog_offsets.get(&store).copied();
            match changelog_bounds(&self.membership, &store, &topic, id.partition, from) {
                Ok((start, _end)) => {
                    stores.insert(store, (topic, start));
                }
                Err(e) => {
                    task.close();
                    return Err(e);
                }
            }
        }
        Ok(StandbyTask {
            task,
            stores,
            uncommitted: 0,
        })
    }

    /// Points the tail consumer at every standby's changelog partitions, from where each is.
    fn reassign_if_changed(&self) {
        let mut standbys = self.spec.registry.inner.lock();
        if !standbys.changed {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (id, standby) in &standbys.tasks {
            for (topic, next) in standby.stores.values() {
                if let Err(e) = tpl.add_partition_offset(topic, id.partition, Offset::Offset(*next))
                {
                    tracing::warn!("standby of {id}: {e}");
                }
            }
        }
        match self.tail.assign(&tpl) {
            Ok(()) => standbys.changed = false,
            Err(e) => tracing::warn!("cannot assign the standby changelogs: {e}"),
        }
    }

    /// Up to 100 ms of changelog records. A consumer error (an offset out of the log's range
    /// among them: the consumer never jumps elsewhere on its own) closes every standby with what
    /// it applied so far: each is opened again at the next refresh, from its checkpoint checked
    /// against its changelog's bounds (and wiped if it is outside them).
    fn poll_batch(&self) -> Vec<TailRecord> {
        let mut batch = Vec::new();
        let until = Instant::now() + Duration::from_millis(100);
        while batch.len() < 10_000 && Instant::now() < until {
            let wait = if batch.is_empty() { 50 } else { 0 };
            match self.tail.poll(Duration::from_millis(wait)) {
                Some(Ok(m)) => batch.push(TailRecord {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().map(<[u8]>::to_vec),
                }),
                Some(Err(e)) => {
                    tracing::warn!("standby changelog read failed, reopening standbys: {e}");
                    self.close_all();
                    break;
                }
                None if batch.is_empty() => {}
                None => break,
            }
        }
        batch
    }

    /// Step 3: writes the records to their standbys' stores.
    fn apply(&self, batch: Vec<TailRecord>) {
        if batch.is_empty() {
            return;
        }
        let mut applied = 0u64;
        let mut standbys = self.spec.registry.inner.lock();
        let mut broken = BTreeSet::new();
        for r in batch {
            let Some((subtopology, store)) = self.store_by_changelog.get(&r.topic) else {
                continue;
            };
            let id = TaskId {
                subtopology: *subtopology,
                partition: r.partition,
            };
            // Claimed since it was read, or read again after a reassignment: skipped.
            let Some(standby) = standbys.tasks.get_mut(&id) else {
                continue;
            };
            let Some((_, next)) = standby.stores.get_mut(store) else {
                continue;
            };
            if r.offset < *next || broken.contains(&id) {
                continue;
            }
            if let Err(e) = standby
                .task
                .restore_record(store, &r.key, r.value.as_deref())
            {
                tracing::warn!(task = %id, offset = r.offset, "standby cannot apply a changelog record: {e}");
                broken.insert(id);
                continue;
            }
            *next = r.offset + 1;
            standby.uncommitted += 1;
            applied += 1;
            if standby.uncommitted >= COMMIT_EVERY_RECORDS {
                if let Err(e) = standby.commit() {
                    tracing::warn!(task = %id, "standby commit failed: {e}");
                    broken.insert(id);
                }
            }
        }
        self.drop_broken(&mut standbys, broken);
        self.spec
            .progress
            .standby_records
            .fetch_add(applied, Ordering::Relaxed);
    }

    fn commit_all(&self) {
        let mut standbys = self.spec.registry.inner.lock();
        let mut failed = Vec::new();
        for (id, standby) in standbys.tasks.iter_mut() {
            if let Err(e) = standby.commit() {
                tracing::warn!(task = %id, "standby commit failed: {e}");
                failed.push(*id);
            }
        }
        self.drop_broken(&mut standbys, failed);
    }

    /// A broken standby is dropped without its uncommitted writes (its state stays at its
    /// checkpoint) and opened again at the next refresh.
    fn drop_broken(&self, standbys: &mut Standbys, broken: impl IntoIterator<Item = TaskId>) {
        for id in broken {
            if let Some(mut standby) = standbys.tasks.remove(&id) {
                standby.task.close();
                self.spec
                    .status
                    .remove_task(&id.to_string(), STANDBY_THREAD);
                standbys.changed = true;
            }
        }
    }

    /// Closes every standby with what it applied, under the lock: a claim meanwhile waits, then
    /// finds nothing to close.
    fn close_all(&self) {
        let mut standbys = self.spec.registry.inner.lock();
        for (id, standby) in std::mem::take(&mut standbys.tasks) {
            standby.close();
            self.spec
                .status
                .remove_task(&id.to_string(), STANDBY_THREAD);
        }
        standbys.changed = true;
    }
}
