//! Internal topics as Kafka Streams makes them: repartition topics keep records until Eddy
//! purges them (`retention.ms=-1`, DeleteRecords after each commit), changelogs of window stores
//! are `compact,delete` with the store's retention plus a day, key-value changelogs `compact`;
//! internal topics that already exist with the wrong partition count or cleanup policy are a
//! clear error at start.

use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, RuntimeConfig, Serdes, StreamsBuilder,
    StreamsConfig, TimeWindows, Topology,
};
use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const APP: &str = "topics";
const REPARTITION: &str = "topics-by-user-repartition";
const WINDOW_CHANGELOG: &str = "topics-clicks-per-minute-changelog";
const TABLE_CHANGELOG: &str = "topics-clicks-per-user-changelog";
const DAY_MS: i64 = 86_400_000;

/// Clicks re-keyed by user (a repartition topic), counted per user and per user and minute.
fn clicks() -> Topology {
    let b = StreamsBuilder::new();
    let by_user = b
        .stream(
            &["clicks"],
            Consumed::with(Serdes::string(), Serdes::string()),
        )
        .group_by(
            |_, user| user.clone(),
            Grouped::named("by-user").with(Serdes::string(), Serdes::string()),
        );
    by_user
        .count(Materialized::named("clicks-per-user"))
        .to_stream()
        .to(
            "user-counts",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    by_user
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_secs(60),
            Duration::from_secs(10),
        ))
        .count(Materialized::named("clicks-per-minute"));
    b.build().unwrap()
}

fn config(dir: &std::path::Path) -> RuntimeConfig {
    let mut c = StreamsConfig::new(APP);
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("commit.interval.ms", "100").unwrap();
    // Purge the repartition topic after every commit (Kafka Streams' default is 30 s).
    c.set("repartition.purge.interval.ms", "0").unwrap();
    RuntimeConfig::new(c, "")
}

fn start(broker: &EmbeddedBroker, dir: &std::path::Path) -> eddy_engine::Result<KafkaStreams> {
    let mut c = config(dir);
    c.bootstrap_servers = broker.bootstrap();
    KafkaStreams::start(clicks(), c)
}

fn broker() -> EmbeddedBroker {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("clicks", 2);
    broker.create_topic("user-counts", 2);
    broker
}

#[test]
fn internal_topics_get_kafka_streams_configs_and_repartition_topics_are_purged() {
    let broker = broker();
    let dir = tempfile::tempdir().unwrap();
    let app = start(&broker, dir.path()).unwrap();
    let config = |topic: &str| {
        broker
            .topic_configs(topic)
            .unwrap_or_else(|| panic!("{topic} was not created"))
    };
    let repartition = config(REPARTITION);
    assert_eq!(
        repartition.get("retention.ms").map(String::as_str),
        Some("-1")
    );
    assert_eq!(
        repartition.get("cleanup.policy").map(String::as_str),
        Some("delete")
    );
    let window = config(WINDOW_CHANGELOG);
    assert_eq!(
        window.get("cleanup.policy").map(String::as_str),
        Some("compact,delete")
    );
    // Retention of the window store (size + grace) plus a day.
    assert_eq!(
        window.get("retention.ms"),
        Some(&(70_000 + DAY_MS).to_string())
    );
    let table = config(TABLE_CHANGELOG);
    assert_eq!(
        table.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(table.get("retention.ms"), None);

    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for i in 0..200 {
        p.send(
            BaseRecord::to("clicks")
                .key(&format!("c{i}"))
                .payload(&format!("user{}", i % 7)),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    // Once what was read from the repartition topic is committed, its records are deleted.
    let until = Instant::now() + Duration::from_secs(60);
    let purged = |broker: &EmbeddedBroker| {
        (0..2).all(|partition| {
            let end = broker
                .partition_state(REPARTITION, partition)
                .map_or(0, |(high, _, _)| high);
            let start = broker.log_start_offset(REPARTITION, partition).unwrap_or(0);
            // The last offset is the transaction's commit marker, past the committed offset.
            end > 0 && start >= end - 1
        })
    };
    let (mut total, mut done) = (0, false);
    while Instant::now() < until && !done {
        total = (0..2)
            .map(|p| broker.partition_state(REPARTITION, p).map_or(0, |s| s.0))
            .sum();
        done = total >= 200 && purged(&broker);
        std::thread::sleep(Duration::from_millis(100));
    }
    app.close().unwrap();
    assert!(
        total >= 200,
        "every click went through the repartition topic"
    );
    assert!(
        done,
        "the repartition topic was purged up to what was committed: {:?}",
        (0..2)
            .map(|p| (
                broker.log_start_offset(REPARTITION, p),
                broker.partition_state(REPARTITION, p)
            ))
            .collect::<Vec<_>>()
    );
}

#[test]
fn an_internal_topic_with_the_wrong_partition_count_is_a_clear_error() {
    let broker = broker();
    broker.create_topic_with_configs(TABLE_CHANGELOG, 3, &[("cleanup.policy", "compact")]);
    let dir = tempfile::tempdir().unwrap();
    let err = start(&broker, dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(TABLE_CHANGELOG) && err.contains("3 partitions") && err.contains('2'),
        "{err}"
    );
}

#[test]
fn a_changelog_that_is_not_compacted_is_a_clear_error() {
    let broker = broker();
    broker.create_topic_with_configs(TABLE_CHANGELOG, 2, &[("cleanup.policy", "delete")]);
    let dir = tempfile::tempdir().unwrap();
    let err = start(&broker, dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(TABLE_CHANGELOG) && err.contains("cleanup.policy"),
        "{err}"
    );
}
