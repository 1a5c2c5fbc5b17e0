//! The runtime's clear errors and its dead-letter topic, on the embedded broker.

use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, RuntimeConfig, Serdes, StreamsBuilder,
    StreamsConfig, DLQ_TOPIC,
};
use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;
use serde::Deserialize;

fn config(app: &str, dir: &std::path::Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(app);
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c
}

#[test]
fn a_missing_input_topic_is_a_clear_error() {
    let broker = EmbeddedBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = KafkaStreams::start(
        eddy_topologies::word_count().unwrap(),
        RuntimeConfig::new(config("missing", dir.path()), broker.bootstrap()),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("input topic `text-lines` does not exist"),
        "{err}"
    );
}

#[test]
fn sources_that_are_not_co_partitioned_are_a_clear_error() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("users", 2);
    broker.create_topic("clicks", 3);
    let b = StreamsBuilder::new();
    let users = b.table(
        "users",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::named("users"),
    );
    b.stream(
        &["clicks"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .join_table(&users, |c, u| format!("{u}{c}"))
    .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let dir = tempfile::tempdir().unwrap();
    let err = KafkaStreams::start(
        b.build().unwrap(),
        RuntimeConfig::new(config("copart", dir.path()), broker.bootstrap()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not co-partitioned"), "{err}");
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
struct Score {
    user: String,
    points: i64,
}

#[test]
fn poison_records_land_in_the_dead_letter_topic_with_their_provenance() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("scores", 2);
    broker.create_topic("totals", 2);
    let b = StreamsBuilder::new();
    b.stream(
        &["scores"],
        Consumed::with(Serdes::string(), Serdes::json::<Score>()),
    )
    .group_by_key(Grouped::default())
    .aggregate(
        || 0i64,
        |_, s: Score, t| t + s.points,
        Materialized::named("totals"),
    )
    .to_stream()
    .to(
        "totals",
        Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut streams = config("poison", dir.path());
    streams
        .set("deserialization.exception.handler", "log_and_continue")
        .unwrap();
    let app = KafkaStreams::start(
        b.build().unwrap(),
        RuntimeConfig::new(streams, broker.bootstrap()),
    )
    .unwrap();
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    let mut poison = 0;
    for i in 0..60 {
        let key = format!("u{}", i % 4);
        let value = if i % 10 == 3 {
            poison += 1;
            format!("{{not json {i}")
        } else {
            serde_json::to_string(&Score {
                user: key.clone(),
                points: 1,
            })
            .unwrap()
        };
        p.send(BaseRecord::to("scores").key(&key).payload(&value))
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "dlq-reader")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(DLQ_TOPIC, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while dead.len() < poison && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            let header = |name: &str| {
                m.headers()
                    .and_then(|h| {
                        h.iter()
                            .find(|x| x.key == name)
                            .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).to_string()))
                    })
                    .unwrap_or_default()
            };
            dead.push((
                String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
                header("source.topic"),
                header("source.offset"),
                header("error"),
            ));
        }
    }
    let progress = app.progress();
    app.close().unwrap();
    assert_eq!(dead.len(), poison, "every poison record, once");
    for (value, topic, offset, error) in &dead {
        assert!(
            value.starts_with("{not json"),
            "the raw value is kept: {value}"
        );
        assert_eq!(topic, "scores");
        assert!(offset.parse::<i64>().is_ok(), "{offset}");
        assert!(error.contains("json"), "{error}");
    }
    assert_eq!(
        progress
            .dead_letters
            .load(std::sync::atomic::Ordering::Relaxed),
        poison as u64
    );
}
