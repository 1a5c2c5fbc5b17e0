//! Running the platform on Kafka: its topics, the seven topologies as applications, and the
//! generator feeding a cluster — what `eddy demo`, `eddy run` and `eddy generate --brokers` use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_engine::{EngineError, KafkaStreams, Result, RuntimeConfig, StreamsConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::generator::{Generator, GeneratorConfig, PLATFORM_TOPICS};

/// Output topics of the platform's topologies.
pub const OUTPUT_TOPICS: &[&str] = &[
    "quiz-results",
    "document-state",
    "analytics.emotion-aggregates",
    "analytics.active-users",
    "analytics.plagiarism-stats",
    "notifications",
    "saga.commands",
    "saga.completed",
];

/// The seven platform topologies, by name.
pub const PLATFORM_TOPOLOGIES: &[&str] = &[
    "quiz-results",
    "document-lifecycle",
    "emotion-aggregates",
    "active-users",
    "plagiarism-stats",
    "document-quiz-saga",
    "notifications",
];

fn kafka(e: impl std::fmt::Display) -> EngineError {
    EngineError::Config {
        key: "bootstrap.servers".into(),
        reason: e.to_string(),
    }
}

/// Creates the platform's input topics (partitions of platform.md) and output topics (3
/// partitions); existing ones are left alone.
pub fn create_platform_topics(bootstrap: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(kafka)?;
    let days = |d: u64| (d * 86_400_000).to_string();
    let retention: Vec<(String, i32, String)> = PLATFORM_TOPICS
        .iter()
        .map(|(name, partitions, retention_days)| {
            (name.to_string(), *partitions, days(*retention_days))
        })
        .chain(OUTPUT_TOPICS.iter().map(|t| (t.to_string(), 3, days(30))))
        .collect();
    let topics: Vec<NewTopic<'_>> = retention
        .iter()
        .map(|(name, partitions, ms)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(1)).set("retention.ms", ms)
        })
        .collect();
    let results = block_on(admin.create_topics(&topics, &AdminOptions::new())).map_err(kafka)?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(kafka(format!("creating {topic}: {code}")));
            }
        }
    }
    Ok(())
}

/// Starts topology `name` as an application of its own (`application.id` = `name`).
pub fn start_topology(
    name: &str,
    bootstrap: &str,
    mut streams: StreamsConfig,
) -> Result<KafkaStreams> {
    let entry = crate::find(name)
        .ok_or_else(|| EngineError::Topology(format!("no topology named `{name}`")))?;
    streams.application_id = name.to_string();
    KafkaStreams::start((entry.build)()?, RuntimeConfig::new(streams, bootstrap))
}

/// Produces the generator's records to Kafka at `rate` records/s (as fast as possible when
/// `None`) until `count` records or `stop`. Returns the records sent.
pub fn feed(
    bootstrap: &str,
    config: GeneratorConfig,
    rate: Option<f64>,
    stop: &AtomicBool,
) -> Result<u64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "10")
        .set("partitioner", "murmur2_random")
        .create()
        .map_err(kafka)?;
    let started = Instant::now();
    let mut sent = 0u64;
    for record in Generator::new(config) {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                producer.poll(wait.min(Duration::from_millis(100)));
                std::thread::sleep(wait.saturating_sub(Duration::from_millis(100)));
            }
        }
        loop {
            let r = BaseRecord::to(record.topic)
                .key(&record.key)
                .payload(&record.value)
                .timestamp(record.timestamp_ms);
            match producer.send(r) {
                Ok(()) => break,
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(kafka(e)),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).map_err(kafka)?;
    Ok(sent)
}

/// A stop flag set by Ctrl-C or SIGTERM.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    stop
}

/// Drives a future on this thread (rdkafka's admin futures are completed by librdkafka's own
/// threads).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
