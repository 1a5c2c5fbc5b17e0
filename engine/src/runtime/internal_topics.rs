//! Topics at start: input topics must exist, co-partitioned sources must agree on partitions,
//! and the internal topics (repartition topics, changelogs, the dead-letter topic) are created
//! with partitions derived from the sources and Kafka Streams' topic configs — or, when they
//! exist, checked against them.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_state::StoreKind;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;

use crate::error::{EngineError, Result};
use crate::runtime::clients::{block_on, KafkaClients};
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
fn broker_topics(clients: &KafkaClients) -> Result<BTreeMap<String, i32>> {
    let consumer = clients.metadata_consumer()?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(kafka_err("reading cluster metadata"))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect())
}

/// Checks the sources and creates the internal topics; answers each store's partition count.
pub(crate) fn prepare(
    topology: &Topology,
    config: &RuntimeConfig,
) -> Result<BTreeMap<String, i32>> {
    let app = &config.streams.application_id;
    let clients = KafkaClients::new(config, topology);
    let existing = broker_topics(&clients)?;
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
            let Some(n) = source_partitions(topology, app, sub, &partitions) else {
                continue;
            };
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
    let mut wanted: Vec<InternalTopic> = Vec::new();
    let mut store_partitions = BTreeMap::new();
    for sub in topology.subtopologies() {
        let n = source_partitions(topology, app, sub, &partitions).unwrap_or(1);
        for store in &sub.stores {
            store_partitions.insert(store.clone(), n);
            if topology.store_is_logged(store) {
                wanted.push(InternalTopic::changelog(topology, app, store, n));
            }
        }
        for sink in &sub.sink_topics {
            if kinds.get(sink) == Some(&TopicKind::Repartition) {
                let name = topology.physical_topic(app, sink);
                let n = partitions.get(&name).copied().unwrap_or(n);
                wanted.push(InternalTopic {
                    name,
                    partitions: n,
                    // Kept until Eddy deletes what its consumers committed (see the purge in
                    // `task_manager.rs`), as Kafka Streams does.
                    configs: vec![
                        ("cleanup.policy", "delete".into()),
                        ("retention.ms", "-1".into()),
                    ],
                    kind: InternalKind::Repartition,
                });
            }
        }
    }
    wanted.push(InternalTopic {
        name: DLQ_TOPIC.to_string(),
        partitions: 1,
        configs: Vec::new(),
        kind: InternalKind::DeadLetters,
    });
    wanted.push(InternalTopic {
        name: Topology::shutdown_requests_topic(app),
        partitions: 1,
        // A request matters only to the instances running when it is made.
        configs: vec![
            ("cleanup.policy", "delete".into()),
            ("retention.ms", "3600000".into()),
        ],
        kind: InternalKind::ShutdownRequests,
    });
    if config.streams.application_server.is_some() {
        wanted.push(InternalTopic {
            name: Topology::query_endpoints_topic(app),
            partitions: 1,
            configs: vec![("cleanup.policy", "compact".into())],
            kind: InternalKind::QueryEndpoints,
        });
    }
    let present: Vec<&InternalTopic> = wanted
        .iter()
        .filter(|t| existing.contains_key(&t.name))
        .collect();
    // One admin client for checking and creating.
    let admin = clients.admin()?;
    validate(&admin, &present, &existing)?;
    let missing: Vec<&InternalTopic> = wanted
        .iter()
        .filter(|t| !existing.contains_key(&t.name))
        .collect();
    if !missing.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| {
                t.configs.iter().fold(
                    NewTopic::new(
                        &t.name,
                        t.partitions,
                        TopicReplication::Fixed(config.streams.replication_factor),
                    ),
                    |new, (k, v)| new.set(k, v),
                )
            })
            .collect();
        let created = block_on(admin.create_topics(&new_topics, &AdminOptions::new()));
        for result in created.map_err(kafka_err("creating internal topics"))? {
            if let Err((topic, code)) = result {
                if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                    return Err(EngineError::Topology(format!(
                        "cannot create internal topic `{topic}`: {code}"
                    )));
                }
            }
        }
        tracing::debug!(topics = ?missing.iter().map(|t| &t.name).collect::<Vec<_>>(), "created internal topics");
    }
    Ok(store_partitions)
}

/// The largest partition count among a sub-topology's sources known so far.
fn source_partitions(
    topology: &Topology,
    app: &str,
    sub: &crate::topology::SubTopology,
    partitions: &BTreeMap<String, i32>,
) -> Option<i32> {
    sub.source_topics
        .iter()
        .filter_map(|t| partitions.get(&topology.physical_topic(app, t)))
        .max()
        .copied()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InternalKind {
    Changelog,
    Repartition,
    DeadLetters,
    QueryEndpoints,
    ShutdownRequests,
}

/// An internal topic as the topology needs it.
#[derive(Debug)]
struct InternalTopic {
    name: String,
    partitions: i32,
    configs: Vec<(&'static str, String)>,
    kind: InternalKind,
}

impl InternalTopic {
    /// A store's changelog: compacted; for window and session stores also deleted past the
    /// store's retention plus a day (Kafka Streams' `windowstore.changelog.additional.retention.ms`),
    /// so that expired windows are neither kept nor restored.
    fn changelog(topology: &Topology, app: &str, store: &str, partitions: i32) -> Self {
        let retention = topology.store_spec(store).and_then(|spec| match spec.kind {
            StoreKind::Window { retention_ms, .. } | StoreKind::Session { retention_ms } => {
                Some(retention_ms)
            }
            StoreKind::KeyValue => None,
        });
        let configs = match retention {
            Some(ms) => vec![
                ("cleanup.policy", "compact,delete".into()),
                (
                    "retention.ms",
                    ms.saturating_add(WINDOW_CHANGELOG_ADDITIONAL_RETENTION_MS)
                        .to_string(),
                ),
            ],
            None => vec![("cleanup.policy", "compact".into())],
        };
        Self {
            name: Topology::changelog_topic(app, store),
            partitions,
            configs,
            kind: InternalKind::Changelog,
        }
    }
}

/// How much longer than its store a windowed changelog keeps records (Kafka Streams' default).
const WINDOW_CHANGELOG_ADDITIONAL_RETENTION_MS: i64 = 86_400_000;

/// Internal topics that exist already must fit: the partition count the topology needs, and a
/// cleanup policy that keeps what a restore or a consumer still needs.
fn validate(
    admin: &AdminClient<DefaultClientContext>,
    present: &[&InternalTopic],
    existing: &BTreeMap<String, i32>,
) -> Result<()> {
    for t in present {
        let have = existing.get(&t.name).copied().unwrap_or(0);
        let any_count = matches!(
            t.kind,
            InternalKind::DeadLetters
                | InternalKind::QueryEndpoints
                | InternalKind::ShutdownRequests
        );
        if !any_count && have != t.partitions {
            return Err(EngineError::Topology(format!(
                "internal topic `{}` exists with {have} partitions, but the topology needs {} \
                 (its source topics have {}); delete the topic (and the application's state) \
                 or give the sources that many partitions",
                t.name, t.partitions, t.partitions
            )));
        }
    }
    let checked: Vec<&&InternalTopic> = present
        .iter()
        .filter(|t| matches!(t.kind, InternalKind::Changelog | InternalKind::Repartition))
        .collect();
    if checked.is_empty() {
        return Ok(());
    }
    let resources: Vec<ResourceSpecifier<'_>> = checked
        .iter()
        .map(|t| ResourceSpecifier::Topic(&t.name))
        .collect();
    let described = block_on(admin.describe_configs(&resources, &AdminOptions::new()))
        .map_err(kafka_err("describing internal topics"))?;
    for (t, result) in checked.iter().zip(described) {
        let resource = result.map_err(|e| {
            EngineError::Topology(format!("cannot describe internal topic `{}`: {e}", t.name))
        })?;
        let policy = resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| "delete".into());
        let policies: Vec<&str> = policy.split(',').map(str::trim).collect();
        let compacted = policies.contains(&"compact");
        let problem = match t.kind {
            InternalKind::Changelog if !compacted => Some("a changelog must be compacted"),
            InternalKind::Repartition if compacted => {
                Some("a repartition topic must not be compacted")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(EngineError::Topology(format!(
                "internal topic `{}` has cleanup.policy={policy}: {problem} (wanted {}); \
                 change the topic's config or delete it",
                t.name,
                t.configs
                    .iter()
                    .find(|(k, _)| *k == "cleanup.policy")
                    .map_or("", |(_, v)| v.as_str())
            )));
        }
    }
    Ok(())
}
