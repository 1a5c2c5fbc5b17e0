//! The one place that builds Kafka clients: the stream thread's main consumer, its producer, the
//! restore consumers, and the admin and metadata clients used at start. Each is built in three
//! layers: Eddy's defaults, then the user's client settings for that client
//! (`config/client.rs`), then what Eddy must control (which the user cannot set).

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::BaseProducer;

use crate::config::{ClientKind, ClientOverrides, ClientScope, ProcessingGuarantee};
use crate::error::{EngineError, Result};
use crate::runtime::RuntimeConfig;

/// How often librdkafka reports statistics to the stream thread: its input lag, and the
/// partition ends that tell a task whether an empty partition has records on their way
/// (`fetched_lag.rs`).
pub(crate) const STATISTICS_INTERVAL_MS: &str = "200";

fn create_error(client: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> EngineError + '_ {
    move |e| EngineError::Config {
        key: "bootstrap.servers".into(),
        reason: format!("creating the {client}: {e}"),
    }
}

/// Builds the clients of one application.
#[derive(Debug, Clone)]
pub(crate) struct KafkaClients {
    bootstrap: String,
    /// `partition.assignment.strategy` of the main consumers (`assignment_strategy`).
    assignor: &'static str,
    /// The prefix of the main consumers' `group.instance.id`, under static membership.
    group_instance: Option<String>,
    overrides: ClientOverrides,
    application_id: String,
    guarantee: ProcessingGuarantee,
    transaction_timeout_ms: u64,
}

impl KafkaClients {
    pub fn new(config: &RuntimeConfig, topology: &crate::topology::Topology) -> Self {
        // The runtime's bootstrap (`--bootstrap`, the embedded broker) wins over the file's.
        let overrides = &config.streams.clients;
        let bootstrap = match config.bootstrap_servers.as_str() {
            "" => overrides
                .get(ClientScope::All, "bootstrap.servers")
                .unwrap_or_default()
                .to_string(),
            given => given.to_string(),
        };
        Self {
            bootstrap,
            assignor: assignment_strategy(topology),
            group_instance: config.streams.group_instance_id.clone(),
            overrides: overrides.clone(),
            application_id: config.streams.application_id.clone(),
            guarantee: config.streams.processing_guarantee,
            transaction_timeout_ms: config.streams.transaction_timeout_ms,
        }
    }

    /// `defaults`, then the user's settings for `kind`, then `controlled`.
    fn layered(
        &self,
        kind: ClientKind,
        defaults: impl FnOnce(&mut ClientConfig),
        controlled: impl FnOnce(&mut ClientConfig),
    ) -> ClientConfig {
        let mut c = ClientConfig::new();
        defaults(&mut c);
        self.overrides.apply(kind, &mut c);
        c.set("bootstrap.servers", &self.bootstrap);
        controlled(&mut c);
        c
    }

    /// Builds every client of a stream thread once and drops it, so that a combination
    /// librdkafka refuses (`max.poll.interval.ms` below `session.timeout.ms`, SASL without a
    /// mechanism it was built with) fails the start rather than a thread.
    pub fn check(&self) -> Result<()> {
        let check = |client: &str, config: ClientConfig, consumer: bool| {
            let created = if consumer {
                config.create::<BaseConsumer>().map(drop)
            } else {
                config.create::<BaseProducer>().map(drop)
            };
            created.map_err(|e| EngineError::Config {
                key: "client settings".into(),
                reason: format!("librdkafka refuses the {client}'s settings: {e}"),
            })
        };
        check("main consumer", self.main_consumer_config(0), true)?;
        check(
            "restore consumer",
            self.restore_consumer_config("read_committed", "10"),
            true,
        )?;
        // The transactional id is left out: a producer created with one would fence nothing,
        // but it need not be registered to check its settings.
        let mut producer = self.producer_config("check", 0);
        producer.remove("transactional.id");
        check("producer", producer, false)?;
        check("admin client", self.admin_config(), false)
    }

    /// The main consumer of stream thread `thread`: named by [`main_consumer_client_id`], in the application's group, offsets
    /// committed only by the thread (with the transaction under exactly-once), eager `range`
    /// assignment so that co-partitioned topics stay together.
    pub fn main_consumer_config(&self, thread: usize) -> ClientConfig {
        self.main_consumer_config_of(thread, None)
    }

    /// [`KafkaClients::main_consumer_config`] of an instance whose state directory names it
    /// `process_id` (the static member id of `group.instance.id=auto`).
    pub fn main_consumer_config_of(&self, thread: usize, process_id: Option<&str>) -> ClientConfig {
        self.layered(
            ClientKind::MainConsumer,
            |c| {
                if let Ok(debug) = std::env::var("EDDY_RDKAFKA_CONSUMER_DEBUG") {
                    c.set("debug", debug);
                }
                c.set("auto.offset.reset", "earliest")
                    .set("session.timeout.ms", "10000")
                    .set("heartbeat.interval.ms", "500");
            },
            |c| {
                c.set("group.id", &self.application_id)
                    .set(
                        "client.id",
                        main_consumer_client_id(&self.application_id, process_id, thread),
                    )
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("partition.assignment.strategy", self.assignor)
                    .set(
                        "isolation.level",
                        match self.guarantee {
                            ProcessingGuarantee::ExactlyOnceV2 => "read_committed",
                            ProcessingGuarantee::AtLeastOnce => "read_uncommitted",
                        },
                    )
                    .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
                let instance = match (self.group_instance.as_deref(), process_id) {
                    (Some("auto"), Some(process)) => Some(process.to_string()),
                    (Some("auto"), None) => None,
                    (Some(id), _) => Some(id.to_string()),
                    (None, _) => None,
                };
                if let Some(instance) = instance {
                    c.set("group.instance.id", format!("{instance}-{thread}"));
                }
            },
        )
    }

    /// The producer of stream thread `thread`; transactional under exactly-once with the id
    /// `<application.id>-<process id>-<thread>` (see `streams_producer.rs`).
    pub fn producer_config(&self, process_id: &str, thread: usize) -> ClientConfig {
        self.layered(
            ClientKind::Producer,
            |c| {
                c.set("linger.ms", "5")
                    .set("queue.buffering.max.messages", "1000000");
                if let Ok(debug) = std::env::var("EDDY_RDKAFKA_DEBUG") {
                    c.set("debug", debug);
                }
            },
            |c| {
                c.set("enable.idempotence", "true")
                    // Java clients' partitioner, so that keys land where Kafka Streams would
                    // put them.
                    .set("partitioner", "murmur2_random")
                    .set("client.id", format!("{}-{thread}", self.application_id));
                if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
                    c.set(
                        "transactional.id",
                        format!("{}-{process_id}-{thread}", self.application_id),
                    )
                    .set(
                        "transaction.timeout.ms",
                        self.transaction_timeout_ms.to_string(),
                    );
                }
            },
        )
    }

    /// A restore consumer (assign-only) reading changelogs with `isolation`.
    pub fn restore_consumer(&self, isolation: &str) -> Result<BaseConsumer> {
        // The client moves from partition to partition: a fetch parked at the end of the last
        // one (500 ms by default) would hold up the next.
        self.restore_consumer_config(isolation, "10")
            .create()
            .map_err(create_error("restore consumer"))
    }

    /// The consumer standby tasks tail their changelogs with (read_committed, assign-only, the
    /// `restore.consumer.` settings): it stays on its partitions, so a fetch may wait at their
    /// ends longer than a restore's.
    pub fn standby_consumer(&self) -> Result<BaseConsumer> {
        let mut config = self.restore_consumer_config("read_committed", "100");
        // A standby whose offset left the log must notice (and start over from its checkpoint,
        // checked against the log's bounds), not go on from the log's start over its state.
        config.set("auto.offset.reset", "error");
        config.create().map_err(create_error("standby consumer"))
    }

    fn restore_consumer_config(&self, isolation: &str, fetch_wait_max_ms: &str) -> ClientConfig {
        self.layered(
            ClientKind::RestoreConsumer,
            |c| {
                c.set("fetch.wait.max.ms", fetch_wait_max_ms);
            },
            |c| {
                c.set("group.id", format!("{}-restore", self.application_id))
                    .set("enable.auto.commit", "false")
                    .set("isolation.level", isolation)
                    // Should the log's start pass the offset a restore asks for (retention,
                    // deleted records), the broker says out of range and the client goes to
                    // the new start.
                    .set("auto.offset.reset", "earliest");
            },
        )
    }

    /// A plain (not transactional) producer, for what is no task's output: this instance's
    /// query endpoint (`query/directory.rs`) and its request to shut the application down.
    pub fn plain_producer(&self) -> Result<BaseProducer> {
        self.layered(
            ClientKind::Producer,
            |c| {
                c.set("linger.ms", "0");
            },
            |_| {},
        )
        .create()
        .map_err(create_error("plain producer"))
    }

    /// The consumer that reads every instance's query endpoint (assign-only, from the start).
    pub fn directory_consumer(&self) -> Result<BaseConsumer> {
        self.assign_only_consumer("query-directory", "100")
    }

    /// The consumer that watches for requests to shut the application down (assign-only; an
    /// offset that retention removed reads from the log's start).
    pub fn shutdown_requests_consumer(&self) -> Result<BaseConsumer> {
        self.assign_only_consumer("shutdown-requests", "200")
    }

    /// An assign-only consumer of an internal topic, in group `<application.id>-<purpose>`,
    /// committing nothing, from the earliest offset when its own is gone.
    fn assign_only_consumer(&self, purpose: &str, fetch_wait_ms: &str) -> Result<BaseConsumer> {
        self.layered(
            ClientKind::OtherConsumer,
            |c| {
                c.set("fetch.wait.max.ms", fetch_wait_ms);
            },
            |c| {
                c.set("group.id", format!("{}-{purpose}", self.application_id))
                    .set("enable.auto.commit", "false")
                    .set("auto.offset.reset", "earliest");
            },
        )
        .create()
        .map_err(|e| EngineError::Config {
            key: "bootstrap.servers".into(),
            reason: format!("creating the {purpose} consumer: {e}"),
        })
    }

    /// A client for cluster metadata.
    pub fn metadata_consumer(&self) -> Result<BaseConsumer> {
        self.admin_config()
            .create()
            .map_err(create_error("metadata client"))
    }

    /// An admin client (internal topics, purging repartition topics).
    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.admin_config()
            .create()
            .map_err(create_error("admin client"))
    }

    fn admin_config(&self) -> ClientConfig {
        self.layered(ClientKind::Admin, |_| {}, |_| {})
    }
}

/// The main consumers' assignor. `cooperative-sticky` moves only the partitions that must
/// move in a rebalance, but assigns each topic's partitions on their own; a sub-topology that
/// reads several topics needs the same partition of each in one task (co-partitioning), which
/// only `range` keeps (it assigns every topic's partition `p` to the same member when their
/// partition counts are equal, which start checks). So: cooperative when every sub-topology
/// reads one topic, range (eager) otherwise.
pub(crate) fn assignment_strategy(topology: &crate::topology::Topology) -> &'static str {
    if topology
        .subtopologies()
        .iter()
        .all(|s| s.source_topics.len() <= 1)
    {
        "cooperative-sticky"
    } else {
        "range"
    }
}

/// Runs a future to completion on this thread (rdkafka's admin API is async; its futures are
/// driven by librdkafka's own threads, so a minimal executor suffices).
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
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

/// The client id of an instance's main consumer: `<application.id>-<process id>-<thread>`, so
/// that the group's membership tells which instance runs which tasks (standby placement reads
/// it back with [`process_of_client_id`]).
pub(crate) fn main_consumer_client_id(
    app: &str,
    process_id: Option<&str>,
    thread: usize,
) -> String {
    match process_id {
        Some(process) => format!("{app}-{process}-{thread}"),
        None => format!("{app}-{thread}"),
    }
}

/// The process id in a main consumer's client id of application `app`, if it is one.
pub(crate) fn process_of_client_id<'a>(app: &str, client_id: &'a str) -> Option<&'a str> {
    let rest = client_id.strip_prefix(app)?.strip_prefix('-')?;
    let (process, thread) = rest.rsplit_once('-')?;
    (!process.is_empty() && thread.parse::<usize>().is_ok()).then_some(process)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Consumed, Produced, Serdes, StreamsBuilder};

    #[test]
    fn co_partitioned_topologies_keep_the_range_assignor() {
        let b = StreamsBuilder::new();
        b.stream(&["a"], Consumed::with(Serdes::string(), Serdes::string()))
            .to("out", Produced::with(Serdes::string(), Serdes::string()));
        assert_eq!(
            assignment_strategy(&b.build().unwrap()),
            "cooperative-sticky"
        );
        let b = StreamsBuilder::new();
        let table = b.table(
            "t",
            Consumed::with(Serdes::string(), Serdes::string()),
            crate::Materialized::named("t-store"),
        );
        b.stream(&["s"], Consumed::with(Serdes::string(), Serdes::string()))
            .join_table(&table, |l: &String, r: &String| format!("{l}{r}"))
            .to("out", Produced::with(Serdes::string(), Serdes::string()));
        assert_eq!(
            assignment_strategy(&b.build().unwrap()),
            "range",
            "a stream-table join needs partition p of both topics in one task"
        );
    }

    #[test]
    fn a_main_consumer_client_id_names_its_process() {
        let id = main_consumer_client_id("quiz-results", Some("7d3f-a1"), 2);
        assert_eq!(process_of_client_id("quiz-results", &id), Some("7d3f-a1"));
        assert_eq!(process_of_client_id("billing", &id), None);
        assert_eq!(process_of_client_id("quiz-results", "quiz-results-2"), None);
        assert_eq!(process_of_client_id("quiz-results", "rdkafka"), None);
    }
}
