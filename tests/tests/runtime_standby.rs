//! Standby replicas (`num.standby.replicas`): an instance keeps warm copies of the stateful tasks
//! another instance runs, so that when that instance leaves, the tasks resume from the copies and
//! restore only what the copies had not read; without standbys they restore their whole
//! changelogs. Both runs end with every word counted exactly as the oracle counts it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig, StreamsConfig};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const APP: &str = "wc-standby";

fn start(bootstrap: &str, state_dir: &std::path::Path, standbys: usize) -> KafkaStreams {
    let mut config = StreamsConfig::new(APP);
    config
        .set("state.dir", state_dir.to_str().unwrap())
        .unwrap()
        .set("commit.interval.ms", "100")
        .unwrap()
        .set("num.standby.replicas", &standbys.to_string())
        .unwrap();
    KafkaStreams::start(
        eddy_topologies::word_count().unwrap(),
        RuntimeConfig::new(config, bootstrap),
    )
    .unwrap()
}

/// Sends lines `range`, each two words of a large vocabulary, and counts them in `oracle`.
fn feed(bootstrap: &str, range: std::ops::Range<usize>, oracle: &mut BTreeMap<String, i64>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for n in range {
        let words = [format!("w{}", n % 3000), format!("w{}", (n * 7 + 1) % 3000)];
        for w in &words {
            *oracle.entry(w.clone()).or_default() += 1;
        }
        loop {
            match producer.send(
                BaseRecord::to("text-lines")
                    .key(&format!("l{n}"))
                    .payload(&words.join(" ")),
            ) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Reads `word-counts` (read_committed) into `last` until it equals `oracle`.
fn await_counts(
    counts: &BaseConsumer,
    last: &mut BTreeMap<String, i64>,
    oracle: &BTreeMap<String, i64>,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && last != oracle {
        if let Some(Ok(m)) = counts.poll(Duration::from_millis(20)) {
            let word = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let count = i64::from_be_bytes(m.payload().unwrap().try_into().unwrap());
            let previous = last.insert(word.clone(), count);
            assert!(
                previous.is_none_or(|p| p < count),
                "{word} counted twice: {previous:?} then {count}"
            );
        }
    }
    assert_eq!(last, oracle, "final counts");
}

/// Waits until the standbys of `app` have written nothing new for a second.
fn await_standbys_quiet(app: &KafkaStreams) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = app.progress().standby_records.load(Relaxed);
    let mut since = Instant::now();
    while Instant::now() < deadline && since.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(100));
        let now = app.progress().standby_records.load(Relaxed);
        if now != seen {
            seen = now;
            since = Instant::now();
        }
    }
}

/// Instance A counts alone, instance B joins; after more input A leaves and B takes every task.
/// Returns what B restored for the take-over and the count store's changelog length.
fn take_over(standbys: usize) -> (u64, usize, Vec<String>) {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("text-lines", 2);
    broker.create_topic("word-counts", 2);
    let dir = tempfile::tempdir().unwrap();
    let counts = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == "word-counts"
    });
    let mut oracle = BTreeMap::new();
    let mut last = BTreeMap::new();

    let a = start(&bootstrap, &dir.path().join("a"), standbys);
    feed(&bootstrap, 0..3000, &mut oracle);
    await_counts(&counts, &mut last, &oracle);

    let b = start(&bootstrap, &dir.path().join("b"), standbys);
    // B joins: the group rebalances, and (with standbys) B opens copies of A's stateful tasks.
    let deadline = Instant::now() + Duration::from_secs(60);
    while standbys > 0 && b.standby_tasks().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    feed(&bootstrap, 3000..4000, &mut oracle);
    await_counts(&counts, &mut last, &oracle);
    await_standbys_quiet(&b);
    let b_standbys = b.standby_tasks();
    let restored_before = b.progress().restored.load(Relaxed);

    a.close().unwrap();
    feed(&bootstrap, 4000..4100, &mut oracle);
    await_counts(&counts, &mut last, &oracle);
    let restored = b.progress().restored.load(Relaxed) - restored_before;
    b.close().unwrap();
    let changelog = eddy_testkit::count_records(&bootstrap, "read_committed", |t| {
        t == "wc-standby-word-counts-changelog"
    });
    (restored, changelog, b_standbys)
}

#[test]
fn a_task_moved_to_its_standby_restores_only_what_the_standby_had_not_read() {
    let (restored, changelog, standbys) = take_over(1);
    eprintln!(
        "with a standby: restored {restored} of {changelog} changelog records; B kept {standbys:?}"
    );
    assert!(
        !standbys.is_empty(),
        "B kept standby copies of A's stateful tasks"
    );
    assert!(
        changelog >= 3_000,
        "the changelog holds {changelog} records"
    );
    assert!(
        restored <= 100,
        "B restored {restored} records on taking over: more than its standbys' lag"
    );
}

#[test]
fn without_standbys_a_moved_task_restores_its_whole_changelog() {
    let (restored, changelog, standbys) = take_over(0);
    eprintln!("without standbys: restored {restored} of {changelog} changelog records");
    assert!(standbys.is_empty());
    assert!(
        restored >= 1_000,
        "B restored only {restored} records of {changelog}"
    );
}
