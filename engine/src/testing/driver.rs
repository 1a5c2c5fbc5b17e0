//! `TopologyTestDriver` and its topic handles.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use crate::config::StreamsConfig;
use crate::error::{EngineError, Result};
use crate::processor::{KeyValueStoreHandle, SessionStoreHandle, WindowStoreHandle};
use crate::record::Headers;
use crate::serdes::SerdeRef;
use crate::task::collector::{ChangelogRecord, DeadLetter, ProducedRecord};
use crate::task::{InputRecord, StreamTask, TaskId};
use crate::time::WallClock;
use crate::topology::Topology;

/// A record read from an output topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord<K, V> {
    pub key: K,
    pub value: V,
    pub timestamp: i64,
    pub headers: Headers,
}

struct DriverState {
    tasks: Vec<StreamTask>,
    /// The tasks that read each topic (looked up for every record).
    readers: HashMap<String, Vec<usize>>,
    /// Every record written to every topic, in order.
    topics: BTreeMap<String, Vec<ProducedRecord>>,
    /// Changelog records per store, in order.
    changelogs: BTreeMap<String, Vec<ChangelogRecord>>,
    dead_letters: Vec<DeadLetter>,
    clock: WallClock,
    commit_every_record: bool,
    _state_dir: Option<tempfile_dir::Dir>,
}

/// A temp directory removed on drop, without a dependency on `tempfile` in the library.
mod tempfile_dir {
    use std::path::PathBuf;

    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn new() -> std::io::Result<Self> {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "eddy-test-driver-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&path)?;
            Ok(Self(path))
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs a topology without a broker.
///
/// ```
/// use eddy_engine::testing::TopologyTestDriver;
/// use eddy_engine::{Consumed, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsConfig};
///
/// let b = StreamsBuilder::new();
/// b.stream(&["words"], Consumed::with(Serdes::string(), Serdes::string()))
///     .group_by(|_, w| w.clone(), Grouped::default().with(Serdes::string(), Serdes::string()))
///     .count(Materialized::named("counts"))
///     .to_stream()
///     .to("word-counts", Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())));
/// let driver = TopologyTestDriver::new(b.build().unwrap(), StreamsConfig::new("wc")).unwrap();
/// let input = driver.input_topic("words", Serdes::string(), Serdes::string());
/// input.pipe_str("", "eddy".to_string(), 0).unwrap();
/// input.pipe_str("", "eddy".to_string(), 1).unwrap();
/// let out = driver.output_topic("word-counts", Serdes::string(), Serdes::nullable(Serdes::i64()));
/// assert_eq!(out.read_values().unwrap(), vec![Some(1), Some(2)]);
/// ```
#[derive(Clone)]
pub struct TopologyTestDriver {
    state: Rc<RefCell<DriverState>>,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopologyTestDriver")
    }
}

/// Dropping the driver closes its tasks' processors (as Kafka Streams' `close()` does).
impl Drop for TopologyTestDriver {
    fn drop(&mut self) {
        // Only the last handle closes (output topics and stores share the state).
        if Rc::strong_count(&self.state) == 1 {
            if let Ok(mut state) = self.state.try_borrow_mut() {
                for task in &mut state.tasks {
                    task.close();
                }
            }
        }
    }
}

impl TopologyTestDriver {
    /// A driver whose persistent stores live in RocksDB in a temporary `state.dir`.
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        Self::with_options(topology, config, true)
    }

    /// A driver with every store in memory (faster; for tests of logic, not of storage).
    pub fn in_memory(topology: Topology, config: StreamsConfig) -> Result<Self> {
        Self::with_options(topology, config, false)
    }

    fn with_options(
        topology: Topology,
        mut config: StreamsConfig,
        persistent: bool,
    ) -> Result<Self> {
        let dir = if persistent {
            let dir = tempfile_dir::Dir::new().map_err(|e| EngineError::Config {
                key: "state.dir".into(),
                reason: e.to_string(),
            })?;
            config.state_dir = dir.0.clone();
            Some(dir)
        } else {
            None
        };
        let clock = WallClock::manual(0);
        let mut tasks = Vec::new();
        // The driver is one instance: its tasks share the memory budgets.
        let memory = crate::task::StateMemory::from_config(&config);
        for sub in topology.subtopologies() {
            let id = TaskId {
                subtopology: sub.id,
                partition: 0,
            };
            tasks.push(StreamTask::new_in(
                &topology,
                id,
                &config,
                clock.clone(),
                persistent,
                &memory,
            )?);
        }
        let mut readers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, task) in tasks.iter().enumerate() {
            for topic in task.input_topics() {
                readers.entry(topic).or_default().push(i);
            }
        }
        Ok(Self {
            state: Rc::new(RefCell::new(DriverState {
                tasks,
                readers,
                topics: BTreeMap::new(),
                changelogs: BTreeMap::new(),
                dead_letters: Vec::new(),
                clock,
                commit_every_record: true,
                _state_dir: dir,
            })),
        })
    }

    /// With `false`, the driver commits only on [`TopologyTestDriver::commit`], so that caches
    /// collapse updates as they do between the runtime's commits.
    pub fn set_commit_every_record(&self, on: bool) {
        self.state.borrow_mut().commit_every_record = on;
    }

    /// A handle to pipe typed records into `topic`.
    pub fn input_topic<K, V>(
        &self,
        topic: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) -> TestInputTopic<K, V> {
        TestInputTopic {
            driver: self.clone(),
            topic: topic.to_string(),
            key,
            value,
        }
    }

    /// A handle to read typed records from `topic`, from the first record on.
    pub fn output_topic<K, V>(
        &self,
        topic: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            driver: self.clone(),
            topic: topic.to_string(),
            key,
            value,
            position: RefCell::new(0),
        }
    }

    /// Pipes one raw record into `topic` and processes everything it causes.
    pub fn pipe_raw(
        &self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let mut queue = VecDeque::new();
        queue.push_back(ProducedRecord {
            topic: topic.to_string(),
            partition: Some(0),
            key,
            value,
            timestamp,
            headers,
        });
        st.route(&mut queue)?;
        if st.commit_every_record {
            st.commit()?;
        }
        Ok(())
    }

    /// Commits every task: caches flush and what they held goes downstream.
    pub fn commit(&self) -> Result<()> {
        self.state.borrow_mut().commit()
    }

    /// Moves the wall clock forward and fires the wall-clock punctuations that are due.
    pub fn advance_wall_clock(&self, by_ms: i64) -> Result<()> {
        let mut st = self.state.borrow_mut();
        st.clock.advance(by_ms);
        let mut queue = VecDeque::new();
        for i in 0..st.tasks.len() {
            st.tasks[i].punctuate_wall_clock()?;
            let produced = st.tasks[i].take_produced();
            queue.extend(st.record_outputs(produced));
        }
        st.route(&mut queue)?;
        st.commit()
    }

    /// Every raw record written to `topic` so far.
    pub fn topic_records(&self, topic: &str) -> Vec<ProducedRecord> {
        self.state
            .borrow()
            .topics
            .get(topic)
            .cloned()
            .unwrap_or_default()
    }

    /// Names of every topic written so far.
    pub fn topic_names(&self) -> Vec<String> {
        self.state.borrow().topics.keys().cloned().collect()
    }

    /// Every changelog record of `store` so far.
    pub fn changelog(&self, store: &str) -> Vec<ChangelogRecord> {
        self.state
            .borrow()
            .changelogs
            .get(store)
            .cloned()
            .unwrap_or_default()
    }

    /// Records that went to the dead-letter path.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.state.borrow().dead_letters.clone()
    }

    /// Records dropped on purpose, by reason, over all tasks.
    pub fn dropped(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for t in &self.state.borrow().tasks {
            for (reason, n) in t.dropped() {
                *out.entry(reason.clone()).or_default() += n;
            }
        }
        out
    }

    fn store_entry(&self, name: &str) -> Result<crate::processor::StoreEntry> {
        self.state
            .borrow()
            .tasks
            .iter()
            .find_map(|t| t.store(name).cloned())
            .ok_or_else(|| EngineError::Topology(format!("no store named `{name}`")))
    }

    /// The key-value store `name`.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStoreHandle<K, V>> {
        KeyValueStoreHandle::new(&self.store_entry(name)?, name)
    }

    /// The window store `name`.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStoreHandle<K, V>> {
        WindowStoreHandle::new(&self.store_entry(name)?, name)
    }

    /// The session store `name`.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStoreHandle<K, V>> {
        SessionStoreHandle::new(&self.store_entry(name)?, name)
    }
}

impl DriverState {
    /// Appends produced records to their topics and returns those some task reads.
    fn record_outputs(&mut self, produced: Vec<ProducedRecord>) -> Vec<ProducedRecord> {
        let mut next = Vec::new();
        for rec in produced {
            let reads = self.readers.contains_key(&rec.topic);
            self.topics
                .entry(rec.topic.clone())
                .or_default()
                .push(rec.clone());
            if reads {
                next.push(rec);
            }
        }
        next
    }

    fn route(&mut self, queue: &mut VecDeque<ProducedRecord>) -> Result<()> {
        while let Some(rec) = queue.pop_front() {
            let offset = {
                let log = self.topics.entry(rec.topic.clone()).or_default();
                // Piped input is logged here; produced records were logged when produced.
                if rec.partition == Some(0) {
                    log.push(rec.clone());
                }
                log.len() as i64 - 1
            };
            let readers = self.readers.get(&rec.topic).cloned().unwrap_or_default();
            for i in readers {
                let input = InputRecord {
                    topic: rec.topic.clone(),
                    partition: 0,
                    offset,
                    key: rec.key.clone(),
                    value: rec.value.clone(),
                    timestamp: rec.timestamp,
                    headers: rec.headers.clone(),
                };
                self.tasks[i].process(input)?;
                let produced = self.tasks[i].take_produced();
                queue.extend(self.record_outputs(produced));
                let dead = self.tasks[i].take_dead_letters();
                self.dead_letters.extend(dead);
            }
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        // Flushing one task can feed another through a repartition topic: repeat until quiet.
        loop {
            let mut queue = VecDeque::new();
            for i in 0..self.tasks.len() {
                self.tasks[i].flush()?;
                self.tasks[i].commit_state(&BTreeMap::new())?;
                let produced = self.tasks[i].take_produced();
                queue.extend(self.record_outputs(produced));
                for rec in self.tasks[i].take_changelog() {
                    self.changelogs
                        .entry(rec.store.clone())
                        .or_default()
                        .push(rec);
                }
            }
            if queue.is_empty() {
                return Ok(());
            }
            self.route(&mut queue)?;
        }
    }
}

/// Pipes typed records into a topic of a [`TopologyTestDriver`].
pub struct TestInputTopic<K, V> {
    driver: TopologyTestDriver,
    topic: String,
    key: SerdeRef<K>,
    value: SerdeRef<V>,
}

impl<K, V> TestInputTopic<K, V> {
    /// Pipes `key`/`value` at `timestamp`.
    pub fn pipe(&self, key: K, value: V, timestamp: i64) -> Result<()> {
        self.pipe_with_headers(key, value, timestamp, Headers::new())
    }

    /// Pipes `key`/`value` with headers.
    pub fn pipe_with_headers(
        &self,
        key: K,
        value: V,
        timestamp: i64,
        headers: Headers,
    ) -> Result<()> {
        let err = |source| EngineError::Serialization {
            target: format!("test topic {}", self.topic),
            source,
        };
        let k = self.key.serialize_nullable(&key).map_err(err)?;
        let v = self.value.serialize_nullable(&value).map_err(err)?;
        self.driver.pipe_raw(&self.topic, k, v, timestamp, headers)
    }
}

impl<V> TestInputTopic<String, V> {
    /// Pipes a value under a string key given as `&str`.
    pub fn pipe_str(&self, key: &str, value: V, timestamp: i64) -> Result<()> {
        self.pipe(key.to_string(), value, timestamp)
    }
}

/// Reads typed records from a topic of a [`TopologyTestDriver`], each once, in order.
pub struct TestOutputTopic<K, V> {
    driver: TopologyTestDriver,
    topic: String,
    key: SerdeRef<K>,
    value: SerdeRef<V>,
    position: RefCell<usize>,
}

impl<K, V> TestOutputTopic<K, V> {
    /// The records not read yet.
    pub fn read_records(&self) -> Result<Vec<TestRecord<K, V>>> {
        let all = self.driver.topic_records(&self.topic);
        let mut pos = self.position.borrow_mut();
        let mut out = Vec::new();
        for rec in all.iter().skip(*pos) {
            let err = |part, source| EngineError::Deserialization {
                part,
                topic: self.topic.clone(),
                partition: 0,
                offset: 0,
                source,
            };
            let key = match self.key.deserialize_nullable(rec.key.as_deref()) {
                Err(crate::error::SerdeError::Null) => self.key.deserialize(&[]),
                other => other,
            }
            .map_err(|e| err("key", e))?;
            let value = self
                .value
                .deserialize_nullable(rec.value.as_deref())
                .map_err(|e| err("value", e))?;
            out.push(TestRecord {
                key,
                value,
                timestamp: rec.timestamp,
                headers: rec.headers.clone(),
            });
        }
        *pos = all.len();
        Ok(out)
    }

    /// `(key, value)` of the records not read yet.
    pub fn read_key_values(&self) -> Result<Vec<(K, V)>> {
        Ok(self
            .read_records()?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect())
    }

    /// Values of the records not read yet.
    pub fn read_values(&self) -> Result<Vec<V>> {
        Ok(self.read_records()?.into_iter().map(|r| r.value).collect())
    }

    /// Whether every record has been read.
    pub fn is_empty(&self) -> bool {
        self.driver.topic_records(&self.topic).len() <= *self.position.borrow()
    }
}
