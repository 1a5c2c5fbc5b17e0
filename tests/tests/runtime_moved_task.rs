//! A task that moves to a worker without its local state (another machine, a lost disk) is
//! restored from its changelogs before its processors start, and takes up the stream time
//! committed with its input offsets: an emit-on-close window count neither emits a closed window
//! again nor counts a late record into it, and a count that emits every update drops records
//! that are late for it.

use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, EmitStrategy, Grouped, KafkaStreams, Materialized, Produced, RuntimeConfig, Serdes,
    StreamsBuilder, StreamsConfig, TimeWindows, Topology,
};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Counts the keys of `events` per 10-second window (no grace), each update (collapsed per
/// commit) or each window once, when it closes; `closed-counts` gets `<key>@<window start>` →
/// count.
fn window_count(emit: EmitStrategy) -> Topology {
    let b = StreamsBuilder::new();
    b.stream(
        &["events"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .group_by_key(Grouped::default())
    .windowed_by(TimeWindows::of_size_and_grace(
        Duration::from_secs(10),
        Duration::ZERO,
    ))
    .emit_strategy(emit)
    .count(Materialized::named("closing-counts"))
    .to_stream()
    .map(|w, count| (format!("{}@{}", w.key, w.start), count))
    .to(
        "closed-counts",
        Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
    );
    b.build().unwrap()
}

fn app(bootstrap: &str, state_dir: &std::path::Path, emit: EmitStrategy) -> KafkaStreams {
    let mut config = StreamsConfig::new("moved");
    config
        .set("state.dir", state_dir.to_str().unwrap())
        .unwrap();
    config.set("commit.interval.ms", "100").unwrap();
    KafkaStreams::start(window_count(emit), RuntimeConfig::new(config, bootstrap)).unwrap()
}

fn send(bootstrap: &str, events: &[(&str, i64)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (key, ts) in events {
        p.send(
            BaseRecord::to("events")
                .key(*key)
                .payload("x")
                .timestamp(*ts),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Reads `closed-counts` until `want` records came or `wait` passed with nothing new.
fn read(c: &BaseConsumer, want: usize, wait: Duration) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < wait && out.len() < want {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let count = i64::from_be_bytes(m.payload().unwrap().try_into().unwrap());
            out.push((key, count));
            last = Instant::now();
        }
    }
    out
}

/// A broker with the topics, and a read_committed reader of `closed-counts`.
fn broker_and_reader() -> (EmbeddedBroker, BaseConsumer) {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("events", 1);
    broker.create_topic("closed-counts", 1);
    let counts = consumer_from_beginning(&broker.bootstrap(), "verifier", "read_committed", |t| {
        t == "closed-counts"
    });
    (broker, counts)
}

#[test]
fn a_moved_emit_on_close_count_emits_no_window_twice() {
    let (broker, counts) = broker_and_reader();
    let bootstrap = broker.bootstrap();

    // The first worker: window [0, 10 s) of "a" gets two records and closes at 10 s.
    let first_dir = tempfile::tempdir().unwrap();
    let first = app(&bootstrap, first_dir.path(), EmitStrategy::OnWindowClose);
    send(&bootstrap, &[("a", 1_000), ("a", 2_000), ("b", 10_500)]);
    let emitted = read(&counts, 1, Duration::from_secs(30));
    assert_eq!(emitted, vec![("a@0".to_string(), 2)]);
    first.close().unwrap();

    // The task moves to a worker with an empty state directory: a late "a" for the closed
    // window, then records that close [10 s, 20 s).
    let second_dir = tempfile::tempdir().unwrap();
    let second = app(&bootstrap, second_dir.path(), EmitStrategy::OnWindowClose);
    send(&bootstrap, &[("a", 3_000), ("b", 12_000), ("c", 21_000)]);
    let emitted = read(&counts, 2, Duration::from_secs(10));
    let restored = second
        .progress()
        .restored
        .load(std::sync::atomic::Ordering::Relaxed);
    second.close().unwrap();
    assert!(restored > 0, "the moved task restored its changelogs");
    assert_eq!(
        emitted,
        vec![("b@10000".to_string(), 2)],
        "only the window that closed after the move, once; the late record was dropped"
    );
}

#[test]
fn a_moved_count_drops_records_that_are_late_for_it() {
    let (broker, counts) = broker_and_reader();
    let bootstrap = broker.bootstrap();

    // The first worker takes stream time to 10.5 s: window [0, 10 s) of "a" is closed.
    let first_dir = tempfile::tempdir().unwrap();
    let first = app(&bootstrap, first_dir.path(), EmitStrategy::OnWindowUpdate);
    send(&bootstrap, &[("a", 1_000), ("b", 10_500)]);
    let mut emitted = read(&counts, 2, Duration::from_secs(30));
    emitted.sort();
    assert_eq!(
        emitted,
        vec![("a@0".to_string(), 1), ("b@10000".to_string(), 1)]
    );
    first.close().unwrap();

    // On an empty state directory the moved task has no local checkpoint: its stream time
    // comes with the committed offset, and the late "a" is dropped.
    let second_dir = tempfile::tempdir().unwrap();
    let second = app(&bootstrap, second_dir.path(), EmitStrategy::OnWindowUpdate);
    send(&bootstrap, &[("a", 3_000), ("b", 12_000)]);
    let emitted = read(&counts, 2, Duration::from_secs(10));
    second.close().unwrap();
    assert_eq!(
        emitted,
        vec![("b@10000".to_string(), 2)],
        "the late record updated no closed window"
    );
}
