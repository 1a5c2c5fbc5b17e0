//! Results that do not depend on where commits fall: a cached aggregate forwards each key with
//! the timestamp of the record that last updated it, and its changelog records carry that
//! timestamp too (not the task's stream time at the commit); a task reading two partitions
//! processes their records in timestamp order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, RuntimeConfig, Serdes, StreamsBuilder,
    StreamsConfig,
};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn produce(bootstrap: &str, topic: &str, records: &[(&str, &str, i64)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (k, v, ts) in records {
        p.send(BaseRecord::to(topic).key(*k).payload(*v).timestamp(*ts))
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// (key, value bytes, timestamp) of the records read_committed shows on `topic`, once `n` came.
fn read(bootstrap: &str, topic: &'static str, n: usize) -> Vec<(String, Vec<u8>, i64)> {
    let c = consumer_from_beginning(bootstrap, "verifier", "read_committed", move |t| t == topic);
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while out.len() < n && Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
                m.timestamp().to_millis().unwrap_or(-1),
            ));
        }
    }
    out
}

fn config(app: &str, dir: &std::path::Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(app);
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c
}

/// Both records are in the input before the application starts, so one commit covers both:
/// the count of `a` must still carry `a`'s own timestamp, downstream and in the changelog.
#[test]
fn cached_counts_and_their_changelog_carry_the_timestamp_of_their_last_update() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", 1);
    broker.create_topic("counts", 1);
    produce(
        &bootstrap,
        "events",
        &[("a", "x", 1_000), ("a", "x", 2_000), ("b", "x", 5_000)],
    );
    let b = StreamsBuilder::new();
    b.stream(
        &["events"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .group_by_key(Grouped::named("by-key").with(Serdes::string(), Serdes::string()))
    .count(Materialized::named("counts"))
    .to_stream()
    .to(
        "counts",
        Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("determinism", dir.path());
    c.set("commit.interval.ms", "1000").unwrap();
    let app = KafkaStreams::start(b.build().unwrap(), RuntimeConfig::new(c, &bootstrap)).unwrap();
    let out = read(&bootstrap, "counts", 2);
    let changelog = read(&bootstrap, "determinism-counts-changelog", 2);
    app.close().unwrap();
    let stamps = |records: &[(String, Vec<u8>, i64)]| -> BTreeMap<String, i64> {
        records.iter().map(|(k, _, ts)| (k.clone(), *ts)).collect()
    };
    let expected = BTreeMap::from([("a".to_string(), 2_000), ("b".to_string(), 5_000)]);
    assert_eq!(out.len(), 2, "one collapsed count per key: {out:?}");
    assert_eq!(stamps(&out), expected, "output timestamps");
    assert_eq!(stamps(&changelog), expected, "changelog timestamps");
}

/// Two co-partitioned topics merged in one task, all records in place before the start: they
/// are processed in timestamp order across the two partitions, not topic by topic.
#[test]
fn a_task_with_two_input_partitions_processes_them_in_timestamp_order() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("left", 1);
    broker.create_topic("right", 1);
    broker.create_topic("merged", 1);
    produce(
        &bootstrap,
        "left",
        &[("k", "l1", 100), ("k", "l2", 300), ("k", "l3", 500)],
    );
    produce(
        &bootstrap,
        "right",
        &[("k", "r1", 200), ("k", "r2", 400), ("k", "r3", 600)],
    );
    let b = StreamsBuilder::new();
    let left = b.stream(
        &["left"],
        Consumed::with(Serdes::string(), Serdes::string()),
    );
    let right = b.stream(
        &["right"],
        Consumed::with(Serdes::string(), Serdes::string()),
    );
    left.merge(&right)
        .to("merged", Produced::with(Serdes::string(), Serdes::string()));
    let dir = tempfile::tempdir().unwrap();
    let app = KafkaStreams::start(
        b.build().unwrap(),
        RuntimeConfig::new(config("ordering", dir.path()), &bootstrap),
    )
    .unwrap();
    let out = read(&bootstrap, "merged", 6);
    app.close().unwrap();
    let values: Vec<String> = out
        .into_iter()
        .map(|(_, v, _)| String::from_utf8(v).unwrap())
        .collect();
    assert_eq!(values, ["l1", "r1", "l2", "r2", "l3", "r3"]);
}

/// A task waiting for an empty partition (`max.task.idle.ms`) while the other one has a large
/// backlog pauses the full one once its buffer is full, and resumes it once it may process:
/// every record comes out once, in order.
#[test]
fn a_task_waiting_for_an_empty_partition_pauses_the_full_one_and_loses_nothing() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("busy", 1);
    broker.create_topic("idle", 1);
    broker.create_topic("merged-backlog", 1);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("queue.buffering.max.messages", "100000")
        .create()
        .unwrap();
    const N: usize = 25_000;
    for i in 0..N {
        p.send(
            BaseRecord::to("busy")
                .key("k")
                .payload(&format!("{i:05}"))
                .timestamp(1_000 + i as i64),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let b = StreamsBuilder::new();
    let busy = b.stream(
        &["busy"],
        Consumed::with(Serdes::string(), Serdes::string()),
    );
    let idle = b.stream(
        &["idle"],
        Consumed::with(Serdes::string(), Serdes::string()),
    );
    busy.merge(&idle).to(
        "merged-backlog",
        Produced::with(Serdes::string(), Serdes::string()),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("backlog", dir.path());
    c.set("max.task.idle.ms", "3000").unwrap();
    let app = KafkaStreams::start(b.build().unwrap(), RuntimeConfig::new(c, &bootstrap)).unwrap();
    let out = read(&bootstrap, "merged-backlog", N);
    std::thread::sleep(Duration::from_secs(1));
    let records_in = app
        .progress()
        .records_in
        .load(std::sync::atomic::Ordering::Relaxed);
    app.close().unwrap();
    let values: Vec<String> = out
        .into_iter()
        .map(|(_, v, _)| String::from_utf8(v).unwrap())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("{i:05}")).collect();
    assert_eq!(values.len(), N, "every record once");
    assert!(values == expected, "in order");
    assert_eq!(records_in, N as u64);
}

/// A stream–table join over a backlog: every table row is older than every stream record, so
/// each record must find its row. The table partition's buffer runs empty again and again
/// while its next fetch is on its way; the task must wait for rows it knows are at the broker
/// (its fetched lag), not process the waiting records against a table that is still behind.
#[test]
fn a_stream_table_join_over_a_backlog_waits_for_the_rows_at_the_broker() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("rows", 1);
    broker.create_topic("clicks", 1);
    broker.create_topic("joined", 1);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("queue.buffering.max.messages", "100000")
        .create()
        .unwrap();
    const N: usize = 30_000;
    for i in 0..N {
        let key = format!("k{i}");
        p.send(
            BaseRecord::to("rows")
                .key(&key)
                .payload(&format!("row{i}"))
                .timestamp(1_000_000 + i as i64),
        )
        .unwrap();
        p.send(
            BaseRecord::to("clicks")
                .key(&key)
                .payload("click")
                .timestamp(1_000_000 + (N + i) as i64),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let b = StreamsBuilder::new();
    let rows = b.table(
        "rows",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::named("rows-store"),
    );
    b.stream(
        &["clicks"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .join_table(&rows, |click: &String, row: &String| {
        format!("{click}:{row}")
    })
    .to("joined", Produced::with(Serdes::string(), Serdes::string()));
    let dir = tempfile::tempdir().unwrap();
    // The default max.task.idle.ms (0): no idling once a partition is known to be caught up.
    let app = KafkaStreams::start(
        b.build().unwrap(),
        RuntimeConfig::new(config("join-backlog", dir.path()), &bootstrap),
    )
    .unwrap();
    let mut out = read(&bootstrap, "joined", N);
    // Whatever was lost would have been dropped by the inner join: give stragglers a moment.
    std::thread::sleep(Duration::from_millis(500));
    let processed = app
        .progress()
        .records_in
        .load(std::sync::atomic::Ordering::Relaxed);
    app.close().unwrap();
    out.sort();
    out.dedup();
    assert_eq!(processed, 2 * N as u64, "every row and click processed");
    assert_eq!(out.len(), N, "every click joined its row (of {N})");
    for (key, value, _) in &out {
        let i = &key[1..];
        assert_eq!(String::from_utf8_lossy(value), format!("click:row{i}"));
    }
}
