//! Topics at start: input topics must exist, co-partitioned sources must agree on partitions,
//! and the internal topics (repartition, compacted changelogs, the dead-letter topic) are created
//! with partitions derived from the sources.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::error::{EngineError, Result};
use crate::runtime::RuntimeConfig;
use crate::topology::{TopicKind, Topology};

/// Where records that cannot be processed go (platform.md).
pub const DLQ_TOPIC: &str = "dlq.failed-events";

fn kafka_err(what: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> EngineError + '_ {
    move |e| EngineError::Config {
        key: "bootstrap.servers".into(),
        reason: format!("{what}: {e}"),
    }
}

/// Partitions of every topic on the broker.
pub(crate) fn broker_topics(bootstrap: &str) -> Result<BTreeMap<String, i32>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(kafka_err("creating a metadata client"))?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(kafka_err("reading cluster metadata"))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect())
}

/// Checks the sources and creates the internal topics.
pub(crate) fn prepare(topology: &Topology, config: &RuntimeConfig) -> Result<()> {
    let app = &config.streams.application_id;
    let existing = broker_topics(&config.bootstrap_servers)?;
    let mut partitions: BTreeMap<String, i32> = BTreeMap::new();
    for topic in topology.source_topics() {
        let n = *existing.get(&topic).ok_or_else(|| {
            EngineError::Topology(format!(
                "input topic `{topic}` does not exist on {}; create it first",
                config.bootstrap_servers
            ))
        })?;
        partitions.insert(topic, n);
    }
    // Repartition topics take the largest partition count of the sub-topology writing them;
    // repeat until nothing changes, as a repartition can feed another.
    let kinds = topology.topics();
    for _ in 0..=topology.subtopologies().len() {
        for sub in topology.subtopologies() {
            let upstream = sub
                .source_topics
                .iter()
                .filter_map(|t| partitions.get(&topology.physical_topic(app, t)))
                .max()
                .copied();
            let Some(n) = upstream else { continue };
            for sink in &sub.sink_topics {
                if kinds.get(sink) == Some(&TopicKind::Repartition) {
                    partitions.insert(topology.physical_topic(app, sink), n);
                }
            }
        }
    }
    // Co-partitioning: the sources of one sub-topology must agree.
    for sub in topology.subtopologies() {
        let counts: BTreeMap<String, i32> = sub
            .source_topics
            .iter()
            .map(|t| topology.physical_topic(app, t))
            .filter_map(|t| partitions.get(&t).map(|n| (t, *n)))
            .collect();
        let mut distinct: Vec<i32> = counts.values().copied().collect();
        distinct.dedup();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            return Err(EngineError::Topology(format!(
                "sub-topology {} joins topics that are not co-partitioned: {counts:?}; give them the same number of partitions",
                sub.id
            )));
        }
    }
    let mut to_create: Vec<(String, i32, bool)> = Vec::new();
    for sub in topology.subtopologies() {
        let n = sub
            .source_topics
            .iter()
            .filter_map(|t| partitions.get(&topology.physical_topic(app, t)))
            .max()
            .copied()
            .unwrap_or(1);
        for store in &sub.stores {
            if topology.store_is_logged(store) {
                to_create.push((Topology::changelog_topic(app, store), n, true));
            }
        }
        for sink in &sub.sink_topics {
            if kinds.get(sink) == Some(&TopicKind::Repartition) {
                let name = topology.physical_topic(app, sink);
                let n = partitions.get(&name).copied().unwrap_or(n);
                to_create.push((name, n, false));
            }
        }
    }
    to_create.push((DLQ_TOPIC.to_string(), 1, false));
    let missing: Vec<&(String, i32, bool)> = to_create
        .iter()
        .filter(|(name, _, _)| !existing.contains_key(name))
        .collect();
    if !missing.is_empty() {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .create()
            .map_err(kafka_err("creating an admin client"))?;
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|(name, n, compact)| {
                let t = NewTopic::new(name, *n, TopicReplication::Fixed(config.replication_factor));
                if *compact {
                    t.set("cleanup.policy", "compact")
                } else {
                    t
                }
            })
            .collect();
        let rt = tokio_free_block_on(admin.create_topics(&new_topics, &AdminOptions::new()));
        for result in rt.map_err(kafka_err("creating internal topics"))? {
            if let Err((topic, code)) = result {
                if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                    return Err(EngineError::Topology(format!(
                        "cannot create internal topic `{topic}`: {code}"
                    )));
                }
            }
        }
        tracing::info!(topics = ?missing.iter().map(|t| &t.0).collect::<Vec<_>>(), "created internal topics");
    }
    Ok(())
}

/// Runs a future to completion on this thread (rdkafka's admin API is async; its futures are
/// driven by librdkafka's own threads, so a minimal executor suffices).
fn tokio_free_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}
