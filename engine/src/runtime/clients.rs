//! The one place that builds Kafka clients: the stream thread's main consumer, its producer, the
//! restore consumers, and the admin and metadata clients used at start, each with the settings
//! Eddy must control.

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::BaseProducer;

use crate::config::ProcessingGuarantee;
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
    application_id: String,
    guarantee: ProcessingGuarantee,
    transaction_timeout_ms: u64,
}

impl KafkaClients {
    pub fn new(config: &RuntimeConfig) -> Self {
        Self {
            bootstrap: config.bootstrap_servers.clone(),
            application_id: config.streams.application_id.clone(),
            guarantee: config.streams.processing_guarantee,
            transaction_timeout_ms: config.streams.transaction_timeout_ms,
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    /// The main consumer of stream thread `thread`: in the application's group, offsets
    /// committed only by the thread (with the transaction under exactly-once), eager `range`
    /// assignment so that co-partitioned topics stay together.
    pub fn main_consumer_config(&self, thread: usize) -> ClientConfig {
        let mut c = self.base();
        if let Ok(debug) = std::env::var("EDDY_RDKAFKA_CONSUMER_DEBUG") {
            c.set("debug", debug);
        }
        c.set("group.id", &self.application_id)
            .set("client.id", format!("{}-{thread}", self.application_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range")
            .set(
                "isolation.level",
                match self.guarantee {
                    ProcessingGuarantee::ExactlyOnceV2 => "read_committed",
                    ProcessingGuarantee::AtLeastOnce => "read_uncommitted",
                },
            )
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "500")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        c
    }

    /// The producer of stream thread `thread`; transactional under exactly-once with the id
    /// `<application.id>-<process id>-<thread>` (see `streams_producer.rs`).
    pub fn producer_config(&self, process_id: &str, thread: usize) -> ClientConfig {
        let mut c = self.base();
        c.set("linger.ms", "5")
            .set("enable.idempotence", "true")
            // Java clients' partitioner, so that keys land where Kafka Streams would put them.
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", "1000000");
        if let Ok(debug) = std::env::var("EDDY_RDKAFKA_DEBUG") {
            c.set("debug", debug);
        }
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
        c
    }

    /// A restore consumer (assign-only) reading changelogs with `isolation`.
    pub fn restore_consumer(&self, isolation: &str) -> Result<BaseConsumer> {
        self.base()
            .set("group.id", format!("{}-restore", self.application_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            // The client moves from partition to partition: a fetch parked at the end of the
            // last one (500 ms by default) would hold up the next.
            .set("fetch.wait.max.ms", "10")
            // Should the log's start pass the offset a restore asks for (retention, deleted
            // records), the broker says out of range and the client goes to the new start.
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(create_error("restore consumer"))
    }

    /// The producer that publishes this instance's query endpoint (`query/directory.rs`):
    /// plain (not transactional), as the endpoint is not part of any task's output.
    pub fn directory_producer(&self) -> Result<BaseProducer> {
        self.base()
            .set("linger.ms", "0")
            .create()
            .map_err(create_error("query directory producer"))
    }

    /// The consumer that reads every instance's query endpoint (assign-only, from the start).
    pub fn directory_consumer(&self) -> Result<BaseConsumer> {
        self.base()
            .set(
                "group.id",
                format!("{}-query-directory", self.application_id),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .create()
            .map_err(create_error("query directory consumer"))
    }

    /// A client for cluster metadata.
    pub fn metadata_consumer(&self) -> Result<BaseConsumer> {
        self.base()
            .create()
            .map_err(create_error("metadata client"))
    }

    /// An admin client (internal topics, purging repartition topics).
    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.base().create().map_err(create_error("admin client"))
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
