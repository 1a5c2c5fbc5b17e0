//! Application-wide shutdown (Kafka Streams' `SHUTDOWN_APPLICATION`), through the internal topic
//! `<application.id>-shutdown-requests`:
//!
//! 1. Each instance reads the topic from its first offset (the topic keeps an hour) and acts
//!    only on requests written after it started: one made by an earlier run does not stop it.
//!    Reading from an offset rather than asking for the end keeps the start free of offset
//!    queries.
//! 2. An instance whose uncaught-error handler answers "shutdown application" appends a request
//!    naming itself and the error, then shuts itself down.
//! 3. Every instance that reads a request shuts down with the error state, the request's reason
//!    as its error.
//!
//! Kafka Streams sends the request in the group's assignment; librdkafka's built-in assignors
//! carry no user data, so the request travels in a topic of the application instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{EngineError, Result};

/// How long the watcher waits for a request in one poll (and so how soon it sees `stop`).
const POLL: Duration = Duration::from_millis(200);

/// Watches for requests and publishes this instance's.
pub(crate) struct ShutdownRequests {
    topic: String,
    instance: String,
    producer: BaseProducer,
    stop: Arc<AtomicBool>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl ShutdownRequests {
    /// Starts watching `topic` from its end; `on_request` is called (once) with the reason of
    /// the first request read.
    pub fn start(
        topic: String,
        instance: String,
        producer: BaseProducer,
        consumer: BaseConsumer,
        on_request: impl Fn(String) + Send + 'static,
    ) -> Result<Arc<Self>> {
        let kafka = |e| EngineError::kafka_fatal("assigning the shutdown-requests topic", e);
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, Offset::Offset(0))
            .map_err(kafka)?;
        consumer.assign(&assignment).map_err(kafka)?;
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("eddy-shutdown-requests".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        if let Some(Ok(m)) = consumer.poll(POLL) {
                            if m.timestamp().to_millis().unwrap_or(0) < started_ms {
                                continue;
                            }
                            let reason = m
                                .payload()
                                .map(|p| String::from_utf8_lossy(p).into_owned())
                                .unwrap_or_default();
                            on_request(reason);
                            return;
                        }
                    }
                })
                .map_err(|e| EngineError::Config {
                    key: "num.stream.threads".into(),
                    reason: format!("cannot start the shutdown-requests thread: {e}"),
                })?
        };
        Ok(Arc::new(Self {
            topic,
            instance,
            producer,
            stop,
            watcher: Mutex::new(Some(watcher)),
        }))
    }

    /// Asks every instance to shut down because of `error` (waits until the request is written
    /// or 10 s pass).
    pub fn request(&self, error: &str) {
        let reason = format!(
            "the application was shut down by instance {} after: {error}",
            self.instance
        );
        let record: BaseRecord<'_, str, str> = BaseRecord::to(&self.topic)
            .key(self.instance.as_str())
            .payload(reason.as_str());
        if let Err((e, _)) = self.producer.send(record) {
            tracing::error!("cannot ask the other instances to shut down: {e}");
            return;
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::error!("cannot ask the other instances to shut down: {e}");
        }
    }

    /// Stops watching.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(watcher) = self.watcher.lock().take() {
            let _ = watcher.join();
        }
    }
}
