//! A stream task: one sub-topology on one partition, with its own processors, stores, stream
//! time and punctuation schedules. The test driver and the Kafka runtime both drive tasks.

pub(crate) mod collector;
pub(crate) mod core;
pub(crate) mod metrics;
pub(crate) mod partition_group;
pub(crate) mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use eddy_state::{
    build_store, Checkpoint, MemoryBudget, RocksDbEnv, RocksDbInstance, RocksDbMemoryConfig,
    StateBatch, StoreContext,
};
use parking_lot::Mutex;

use crate::config::{ExceptionHandler, StreamsConfig};
use crate::error::{EngineError, ErrorKind, Result};
use crate::processor::StoreEntry;
use crate::record::RecordMetadata;
use crate::task::collector::{ChangelogBuffer, ChangelogRecord, DeadLetter, ProducedRecord};
pub use crate::task::core::InputRecord;
use crate::task::core::{NodeInfo, TaskCore};
use crate::time::{
    PunctuationType, RawRecord, RecordTimestampExtractor, TimestampExtractor, WallClock,
};
use crate::topology::{NodeKind, Topology};

/// The one RocksDB cache and write-buffer manager of this process.
pub(crate) fn rocksdb_env() -> &'static RocksDbEnv {
    static ENV: OnceLock<RocksDbEnv> = OnceLock::new();
    ENV.get_or_init(|| RocksDbEnv::new(RocksDbMemoryConfig::default()))
}

/// The memory budgets that every task of one instance (a `KafkaStreams`, a test driver) shares:
/// `statestore.cache.max.bytes` for the caching stores and `statestore.uncommitted.max.bytes`
/// for the transaction buffers are totals for the instance, as in Kafka Streams.
#[derive(Debug, Clone)]
pub struct StateMemory {
    pub cache: Arc<MemoryBudget>,
    pub uncommitted: Arc<MemoryBudget>,
}

impl StateMemory {
    /// Budgets of the sizes `config` sets.
    pub fn from_config(config: &StreamsConfig) -> Self {
        Self {
            cache: MemoryBudget::new(config.cache_max_bytes),
            uncommitted: MemoryBudget::new(config.uncommitted_max_bytes),
        }
    }
}

/// Identifies a task: `<sub-topology>_<partition>`, as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub subtopology: usize,
    pub partition: i32,
}

/// Where task `id` keeps its persistent stores: `<state.dir>/<application.id>/<task id>`.
pub(crate) fn task_dir(config: &StreamsConfig, id: TaskId) -> std::path::PathBuf {
    config
        .state_dir
        .join(&config.application_id)
        .join(id.to_string())
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// One sub-topology running on one partition.
pub struct StreamTask {
    id: TaskId,
    core: TaskCore,
    sources: HashMap<String, (usize, Arc<dyn TimestampExtractor>)>,
    order: Vec<usize>,
    changelog: Arc<ChangelogBuffer>,
    rocksdb: Option<Arc<RocksDbInstance>>,
    /// The stream time of the last batch this task committed to RocksDB (`None`: none yet), so
    /// that an idle task's commit writes nothing.
    committed_stream_time: Option<Option<i64>>,
    /// Whether the processors' `init` ran (a task closed while restoring, or a standby, never
    /// initializes them, and must not close them either).
    initialized: bool,
    deserialization_handler: ExceptionHandler,
    processing_handler: ExceptionHandler,
    /// Input fetched but not processed yet (the runtime's path; the test driver processes
    /// directly).
    buffered: partition_group::PartitionGroup,
}

impl std::fmt::Debug for StreamTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTask").field("id", &self.id).finish()
    }
}

impl StreamTask {
    /// Builds the task's stores and processors and initializes them. Persistent stores live in
    /// RocksDB under `state.dir/<application.id>/<task id>/` when `persistent` is true.
    /// The task has memory budgets of its own; see [`StreamTask::new_in`].
    pub fn new(
        topology: &Topology,
        id: TaskId,
        config: &StreamsConfig,
        clock: WallClock,
        persistent: bool,
    ) -> Result<Self> {
        Self::new_in(
            topology,
            id,
            config,
            clock,
            persistent,
            &StateMemory::from_config(config),
        )
    }

    /// [`StreamTask::new`] for a task of an instance whose tasks share `memory`.
    pub fn new_in(
        topology: &Topology,
        id: TaskId,
        config: &StreamsConfig,
        clock: WallClock,
        persistent: bool,
        memory: &StateMemory,
    ) -> Result<Self> {
        let mut task = Self::open(topology, id, config, clock, persistent, memory)?;
        task.initialize()?;
        Ok(task)
    }

    /// Builds the task's stores and processors without initializing the processors: the
    /// runtime restores the stores first, since processors read their state in `init` (as
    /// Kafka Streams initializes a task's topology once its restoration is complete).
    pub(crate) fn open(
        topology: &Topology,
        id: TaskId,
        config: &StreamsConfig,
        clock: WallClock,
        persistent: bool,
        memory: &StateMemory,
    ) -> Result<Self> {
        let sub = topology
            .subtopologies
            .get(id.subtopology)
            .ok_or_else(|| EngineError::Topology(format!("no sub-topology {}", id.subtopology)))?;
        let task_id = id.to_string();
        let rocksdb = if persistent
            && sub
                .stores
                .iter()
                .any(|s| topology.stores[s].spec.persistent)
        {
            Some(RocksDbInstance::open(rocksdb_env(), task_dir(config, id))?)
        } else {
            None
        };
        let changelog = ChangelogBuffer::new();
        let record_time = eddy_state::RecordTime::default();
        let store_ctx = StoreContext {
            record_time: record_time.clone(),
            task_id: format!("{}/{task_id}", config.application_id),
            rocksdb: rocksdb.clone(),
            changelog: Some(changelog.clone() as Arc<dyn eddy_state::ChangelogSink>),
            cache: Arc::clone(&memory.cache),
            uncommitted: Arc::clone(&memory.uncommitted),
            timed: config.metrics_recording_level == crate::metrics::RecordingLevel::Debug,
        };
        let mut stores = HashMap::new();
        for name in &sub.stores {
            let def = &topology.stores[name];
            let built = build_store(&def.spec, &store_ctx)?;
            stores.insert(
                name.clone(),
                StoreEntry {
                    store: Arc::new(Mutex::new(built)),
                    serdes: Arc::clone(&def.serdes),
                },
            );
        }
        let info: Vec<NodeInfo> = topology
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                children: Vec::new(),
                stores: n.stores.clone(),
            })
            .collect();
        let mut info = info;
        for (i, n) in topology.nodes.iter().enumerate() {
            for p in &n.parents {
                if let Some(pi) = topology.node_index(p) {
                    info[pi].children.push(i);
                }
            }
        }
        let mut nodes: Vec<Option<Box<dyn crate::processor::node::Node>>> =
            (0..topology.nodes.len()).map(|_| None).collect();
        let mut sources = HashMap::new();
        for &i in &sub.nodes {
            let def = &topology.nodes[i];
            nodes[i] = Some((def.factory)());
            if let NodeKind::Source { topics, extractor } = &def.kind {
                let extractor = extractor
                    .clone()
                    .unwrap_or_else(|| Arc::new(RecordTimestampExtractor));
                for t in topics {
                    sources.insert(
                        topology.physical_topic(&config.application_id, t),
                        (i, Arc::clone(&extractor)),
                    );
                }
            }
        }
        let metrics = metrics::TaskMetrics::new(
            &config.application_id,
            &task_id,
            config.metrics_recording_level == crate::metrics::RecordingLevel::Debug,
        );
        let mut task = Self {
            id,
            core: TaskCore {
                task_id,
                application_id: config.application_id.clone(),
                nodes,
                info: Arc::new(info),
                stores,
                metadata: None,
                input: None,
                input_time: 0,
                stream_time: i64::MIN,
                clock,
                schedules: Vec::new(),
                next_schedule: 0,
                produced: Vec::new(),
                dead_letters: Vec::new(),
                dropped: BTreeMap::new(),
                metrics,
                record_time,
            },
            buffered: partition_group::PartitionGroup::new(sources.keys().cloned()),
            sources,
            order: sub.nodes.clone(),
            changelog,
            rocksdb,
            committed_stream_time: None,
            initialized: false,
            deserialization_handler: config.deserialization_exception_handler,
            processing_handler: config.processing_exception_handler,
        };
        // Stream time carries over a restart (the windows' grace depends on it).
        if let Some(t) = task.checkpoint()?.stream_time {
            task.core.stream_time = t;
        }
        Ok(task)
    }

    /// Initializes the processors, in topological order; once, after the stores are restored.
    pub(crate) fn initialize(&mut self) -> Result<()> {
        // Writes made in `init` carry the task's stream time (not 0, which a changelog with
        // time retention would delete at once).
        self.core.record_time.set(self.core.stream_time.max(0));
        self.initialized = true;
        for &i in &self.order {
            let mut node = self.core.take_node(i)?;
            let result = node.init(&mut self.core, i);
            self.core.nodes[i] = Some(node);
            result?;
        }
        Ok(())
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The topics this task reads, as named on the broker.
    pub fn input_topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.sources.keys().cloned().collect();
        t.sort();
        t
    }

    /// Moves stream time up to `t` (the time committed with the input offsets, when the local
    /// checkpoint has none or an older one); before [`StreamTask::initialize`].
    pub(crate) fn advance_stream_time(&mut self, t: i64) {
        self.core.stream_time = self.core.stream_time.max(t);
    }

    /// The largest event time this task has seen (`i64::MIN` before the first record).
    pub fn stream_time(&self) -> i64 {
        self.core.stream_time
    }

    /// Runs one input record through the sub-topology. A bad record is handled as configured:
    /// `log_and_fail` returns the error; `log_and_continue` dead-letters and counts it.
    pub fn process(&mut self, input: InputRecord) -> Result<()> {
        let ts = self.extract_timestamp(&input)?;
        self.process_extracted(input, ts)
    }

    /// Buffers a fetched record with its extracted timestamp, to be processed by
    /// [`StreamTask::process_next`] in timestamp order across the task's partitions.
    pub(crate) fn add_record(&mut self, input: InputRecord) -> Result<()> {
        let ts = self.extract_timestamp(&input)?;
        self.buffered.add(ts, input);
        Ok(())
    }

    /// Processes the next buffered record (see `partition_group.rs`), if one is ready;
    /// `fetched_lag(topic)` is the records of the task's partition of `topic` at the broker and
    /// not buffered yet, if known. Returns the topic, partition and offset it came from.
    pub(crate) fn process_next(
        &mut self,
        now: std::time::Instant,
        max_idle_ms: i64,
        fetched_lag: &mut dyn FnMut(&str) -> Option<i64>,
    ) -> Result<Option<(String, i32, i64)>> {
        let Some((ts, input)) = self.buffered.next(now, max_idle_ms, fetched_lag) else {
            return Ok(None);
        };
        let from = (input.topic.clone(), input.partition, input.offset);
        self.process_extracted(input, ts)?;
        Ok(Some(from))
    }

    /// Records of `topic` fetched and not processed yet.
    pub(crate) fn buffered_in(&self, topic: &str) -> usize {
        self.buffered.queued(topic)
    }

    fn extract_timestamp(&self, input: &InputRecord) -> Result<i64> {
        let (_, extractor) = self.sources.get(&input.topic).ok_or_else(|| {
            EngineError::Topology(format!("task {} does not read `{}`", self.id, input.topic))
        })?;
        let raw = RawRecord {
            topic: &input.topic,
            partition: input.partition,
            offset: input.offset,
            key: input.key.as_deref(),
            value: input.value.as_deref(),
            timestamp: input.timestamp,
        };
        Ok(extractor.extract(&raw, self.core.stream_time))
    }

    fn process_extracted(&mut self, input: InputRecord, ts: i64) -> Result<()> {
        let source = self
            .sources
            .get(&input.topic)
            .map(|(s, _)| *s)
            .ok_or_else(|| {
                EngineError::Topology(format!("task {} does not read `{}`", self.id, input.topic))
            })?;
        if ts < 0 {
            tracing::warn!(topic = %input.topic, offset = input.offset, "dropping record with invalid timestamp {ts}");
            self.core.count_dropped("invalid-timestamp");
            return Ok(());
        }
        self.core.metrics.processed.inc();
        self.core.metrics.lateness(self.core.stream_time, ts);
        self.core.stream_time = self.core.stream_time.max(ts);
        self.core.input_time = ts;
        self.core.record_time.set(ts);
        self.core.metadata = Some(RecordMetadata {
            topic: input.topic.clone(),
            partition: input.partition,
            offset: input.offset,
        });
        self.core.input = Some(input);
        let result = self.run_input(source);
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::BadRecord => {
                let handler = match e {
                    EngineError::Deserialization { .. } => self.deserialization_handler,
                    _ => self.processing_handler,
                };
                match handler {
                    ExceptionHandler::LogAndFail => Err(e),
                    ExceptionHandler::LogAndContinue => {
                        tracing::warn!(task = %self.id, error = %e, "skipping bad record");
                        self.core.count_dropped(match e {
                            EngineError::Deserialization { .. } => "deserialization-error",
                            _ => "processing-error",
                        });
                        self.core.dead_letter(e.to_string());
                        Ok(())
                    }
                }
            }
            Err(e) => Err(e),
        };
        self.core.metadata = None;
        self.core.input = None;
        outcome?;
        self.punctuate(PunctuationType::StreamTime, self.core.stream_time)?;
        Ok(())
    }

    fn run_input(&mut self, source: usize) -> Result<()> {
        let mut node = self.core.take_node(source)?;
        let result = node.process_input(&mut self.core, source);
        self.core.nodes[source] = Some(node);
        result
    }

    /// Fires every wall-clock schedule that is due. Returns whether any fired.
    pub fn punctuate_wall_clock(&mut self) -> Result<bool> {
        let now = self.core.clock.now_ms();
        self.punctuate(PunctuationType::WallClock, now)
    }

    fn punctuate(&mut self, kind: PunctuationType, time: i64) -> Result<bool> {
        if kind == PunctuationType::StreamTime && time == i64::MIN {
            return Ok(false);
        }
        let mut due = Vec::new();
        for s in &mut self.core.schedules {
            if s.kind == kind && s.fire_at(time) {
                due.push((s.node, s.id));
            }
        }
        // Writes made by a punctuation carry its time, as in Kafka Streams; the record's comes
        // back after it.
        let record_time = self.core.record_time.get();
        for (node_id, schedule) in &due {
            self.core.record_time.set(time);
            let mut node = self.core.take_node(*node_id)?;
            let result = node.punctuate(*schedule, time, &mut self.core, *node_id);
            self.core.nodes[*node_id] = Some(node);
            self.core.record_time.set(record_time);
            result?;
        }
        Ok(!due.is_empty())
    }

    /// Prepares a commit: processors forward what their caches held back (in topological
    /// order, so downstream caches see it), then every store writes its cache down.
    pub fn flush(&mut self) -> Result<()> {
        for &i in &self.order {
            let mut node = self.core.take_node(i)?;
            let result = node.flush(&mut self.core, i);
            self.core.nodes[i] = Some(node);
            result?;
        }
        for entry in self.core.stores.values() {
            entry.store.lock().key_values().flush()?;
        }
        Ok(())
    }

    /// Whether a store's cache is over its size and wants an early commit.
    pub fn needs_commit(&self) -> bool {
        self.core
            .stores
            .values()
            .any(|e| e.store.lock().key_values().cache_full())
    }

    /// Records for sink and repartition topics since the last call.
    pub fn take_produced(&mut self) -> Vec<ProducedRecord> {
        let produced = std::mem::take(&mut self.core.produced);
        self.core.metrics.end_to_end(&produced);
        produced
    }

    /// Store changes since the last call.
    pub fn take_changelog(&mut self) -> Vec<ChangelogRecord> {
        self.changelog.drain()
    }

    /// Bad records since the last call.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.core.dead_letters)
    }

    /// Records dropped on purpose, by reason, since the task started.
    pub fn dropped(&self) -> &BTreeMap<String, u64> {
        &self.core.dropped
    }

    /// The store `name`, for reading (queries, tests) or restoring.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn store(&self, name: &str) -> Option<&StoreEntry> {
        self.core.stores.get(name)
    }

    /// Names of this task's stores that have a changelog.
    pub fn logged_stores(&self, topology: &Topology) -> Vec<String> {
        let mut names: Vec<String> = self
            .core
            .stores
            .keys()
            .filter(|n| topology.store_is_logged(n))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Counts records restored into `store` (Prometheus `eddy_task_restored_records_total`).
    pub(crate) fn count_restored(&self, store: &str, records: u64) {
        self.core.metrics.restored(store, records);
    }

    /// Writes one changelog record back into `store` (restore: no cache, no changelog). Window
    /// and session stores restore through their own layer, which drops windows that are out of
    /// retention and takes up the sequence numbers of duplicates.
    pub fn restore_record(&mut self, store: &str, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let entry = self.core.stores.get(store).ok_or_else(|| {
            EngineError::Topology(format!("task {} has no store `{store}`", self.id))
        })?;
        let mut built = entry.store.lock();
        match &mut *built {
            eddy_state::BuiltStore::KeyValue(s) => s.restore(key, value)?,
            eddy_state::BuiltStore::Window(w) => w.restore_raw(key, value)?,
            eddy_state::BuiltStore::Session(s) => s.restore_raw(key, value)?,
        }
        Ok(())
    }

    /// Makes the writes of a committed transaction local state: every store hands its buffered
    /// writes on, and the persistent ones land in one RocksDB batch together with the checkpoint
    /// (`changelog_offsets`: store → next changelog offset, for the stores whose changelog was
    /// written; the others keep theirs), the stream time, and `input_offsets` (input topic →
    /// next offset of the task's partition consumed in the transaction: the position the state
    /// now answers queries at). Called only after the transaction
    /// committed; an aborted transaction's writes are dropped with the task.
    pub fn commit_state(&mut self, changelog_offsets: &BTreeMap<String, i64>) -> Result<()> {
        self.commit_state_at(changelog_offsets, &BTreeMap::new())
    }

    /// [`StreamTask::commit_state`], recording the input position the state reflects.
    pub(crate) fn commit_state_at(
        &mut self,
        changelog_offsets: &BTreeMap<String, i64>,
        input_offsets: &BTreeMap<String, i64>,
    ) -> Result<()> {
        let mut batch = StateBatch::new();
        for entry in self.core.stores.values() {
            entry.store.lock().key_values().commit_into(&mut batch)?;
        }
        if let Some(db) = &self.rocksdb {
            // Only a store on RocksDB keeps what the checkpoint says across a restart; an
            // in-memory store beside it must restore its changelog from the start.
            let checkpoint = Checkpoint {
                changelog_offsets: changelog_offsets
                    .iter()
                    .filter(|(store, _)| self.store_is_persistent(store))
                    .map(|(store, offset)| (store.clone(), *offset))
                    .collect(),
                stream_time: (self.core.stream_time != i64::MIN).then_some(self.core.stream_time),
                input_offsets: input_offsets.clone(),
            };
            // An idle task (no writes, no changelog records, the same stream time) has nothing
            // to write: its last batch already says all of it.
            let idle = batch.is_empty()
                && checkpoint.changelog_offsets.is_empty()
                && checkpoint.input_offsets.is_empty()
                && self.committed_stream_time == Some(checkpoint.stream_time);
            if !idle {
                db.commit(batch, &checkpoint)?;
                self.committed_stream_time = Some(checkpoint.stream_time);
            }
        }
        Ok(())
    }

    /// How far the local state has got: the checkpoints of the persistent stores (in-memory
    /// stores are empty after a restart and restore fully, whatever an older checkpoint says).
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut checkpoint = match &self.rocksdb {
            Some(db) => db.checkpoint()?,
            None => Checkpoint::default(),
        };
        checkpoint
            .changelog_offsets
            .retain(|store, _| self.store_is_persistent(store));
        Ok(checkpoint)
    }

    fn store_is_persistent(&self, store: &str) -> bool {
        self.core
            .stores
            .get(store)
            .is_some_and(|e| e.store.lock().key_values().persistent())
    }

    /// The task's RocksDB database, if it has persistent stores.
    pub fn rocksdb(&self) -> Option<&Arc<RocksDbInstance>> {
        self.rocksdb.as_ref()
    }

    /// Closes the processors (those of a task that was initialized).
    pub fn close(&mut self) {
        if !self.initialized {
            return;
        }
        for &i in &self.order {
            if let Some(node) = self.core.nodes[i].as_mut() {
                node.close();
            }
        }
    }
}
