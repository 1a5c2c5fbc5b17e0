//! The Kafka runtime on the embedded broker: a topology with a repartition and a count, run by
//! one or two workers, exactly once; outputs read with read_committed equal an oracle.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig, StreamsConfig};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;

use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn produce_lines(bootstrap: &str, lines: &[String]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        let key = format!("line-{i}");
        p.send(BaseRecord::to("text-lines").key(&key).payload(line))
            .unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Every (word, count) on `word-counts`, read_committed, until `done` says the oracle is met.
fn read_counts(
    bootstrap: &str,
    done: impl Fn(&BTreeMap<String, Vec<i64>>) -> bool,
) -> BTreeMap<String, Vec<i64>> {
    let c = consumer_from_beginning(bootstrap, "verifier", "read_committed", |t| {
        t == "word-counts"
    });
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !done(&seen) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            let word = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let count = m
                .payload()
                .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
                .unwrap_or(-1);
            seen.entry(word).or_default().push(count);
        }
    }
    seen
}

fn lines(n: usize) -> (Vec<String>, BTreeMap<String, i64>) {
    let words = [
        "kafka", "streams", "eddy", "rust", "exactly", "once", "state", "store",
    ];
    let mut oracle = BTreeMap::new();
    let lines = (0..n)
        .map(|i| {
            let line: Vec<&str> = (0..3)
                .map(|j| words[(i * 7 + j * 3) % words.len()])
                .collect();
            for w in &line {
                *oracle.entry(w.to_string()).or_insert(0) += 1;
            }
            line.join(" ")
        })
        .collect();
    (lines, oracle)
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn config(app: &str, guarantee: &str, dir: &std::path::Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(app);
    c.set("processing.guarantee", guarantee).unwrap();
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("commit.interval.ms", "100").unwrap();
    c
}

fn check(seen: &BTreeMap<String, Vec<i64>>, oracle: &BTreeMap<String, i64>, exactly_once: bool) {
    for (word, want) in oracle {
        let counts = seen
            .get(word)
            .unwrap_or_else(|| panic!("no count for {word}"));
        assert_eq!(
            counts.last(),
            Some(want),
            "final count of {word}: {counts:?}"
        );
        if exactly_once {
            assert!(
                counts.windows(2).all(|w| w[0] < w[1]),
                "counts of {word} only grow, no duplicate: {counts:?}"
            );
        }
    }
}

#[test]
fn one_worker_counts_words_exactly_once() {
    exactly_once_word_count(|_| {}, |_| {}, Aborts::Never);
}

#[test]
fn exactly_once_holds_when_the_broker_delays_end_txn() {
    exactly_once_word_count(
        |broker| broker.delay_requests(kafka_protocol_api::END_TXN, Duration::from_millis(300)),
        |_| {},
        Aborts::Never,
    );
}

#[test]
fn exactly_once_holds_when_the_broker_pauses_past_the_session_timeout() {
    exactly_once_word_count(
        |_| {},
        |broker| {
            broker.pause();
            std::thread::sleep(Duration::from_secs(12)); // session.timeout.ms is 10 s
            broker.resume();
        },
        Aborts::Allowed,
    );
}

/// A commit whose TxnOffsetCommit the broker refuses (an abortable error) is aborted: its outputs
/// stay in the log but read_committed never shows them.
#[test]
fn a_refused_offset_commit_aborts_the_transaction_and_its_outputs_stay_invisible() {
    let aborts = exactly_once_word_count(
        |_| {},
        |broker| {
            broker.fail_requests(
                kafka_protocol_api::TXN_OFFSET_COMMIT,
                kafka_protocol_api::GROUP_AUTHORIZATION_FAILED,
                Some(1),
            )
        },
        Aborts::Expected,
    );
    assert!(aborts >= 1, "the refused commit aborted its transaction");
}

/// The broker rejects a write to the count's changelog, so the transaction holding those state
/// changes aborts. Its state changes are dropped with it: had they stayed in the store, the
/// redone records would be counted twice and the final counts would pass the oracle.
#[test]
fn an_aborted_transaction_drops_its_state_changes() {
    let aborts = exactly_once_word_count(
        |_| {},
        |broker| {
            broker.reject_produce_to("-changelog", kafka_protocol_api::INVALID_RECORD, 1);
        },
        Aborts::Expected,
    );
    assert!(
        aborts >= 1,
        "the rejected changelog write aborted its transaction"
    );
}

/// The ApiKey numbers and error codes the fault injection takes.
mod kafka_protocol_api {
    pub const END_TXN: i16 = 26;
    pub const TXN_OFFSET_COMMIT: i16 = 28;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const INVALID_RECORD: i16 = 87;
}

/// What a scenario's faults may do to commits.
#[derive(PartialEq)]
enum Aborts {
    /// No commit may fail.
    Never,
    /// Commits may fail (e.g. a lost session), possibly before writing anything.
    Allowed,
    /// A fault aborts a transaction that has written records: they must be in the log yet
    /// invisible to read_committed.
    Expected,
}

/// The word count under exactly-once: `before` runs before the application starts, `during`
/// between the two halves of the input; failed commits as `aborts` says (they must still leave
/// no duplicate and no gap). Returns the number of aborted commits.
fn exactly_once_word_count(
    before: impl Fn(&EmbeddedBroker),
    during: impl Fn(&EmbeddedBroker),
    aborts_expected: Aborts,
) -> u64 {
    logs();
    let broker = EmbeddedBroker::start().unwrap();
    before(&broker);
    broker.create_topic("text-lines", 3);
    broker.create_topic("word-counts", 3);
    let dir = tempfile::tempdir().unwrap();
    let app = KafkaStreams::start(
        eddy_topologies::word_count().unwrap(),
        RuntimeConfig::new(
            config("wc-eos", "exactly_once_v2", dir.path()),
            broker.bootstrap(),
        ),
    )
    .unwrap();
    let (input, oracle) = lines(300);
    produce_lines(&broker.bootstrap(), &input[..150]);
    std::thread::sleep(Duration::from_millis(300));
    during(&broker);
    produce_lines(&broker.bootstrap(), &input[150..]);
    let seen = read_counts(&broker.bootstrap(), |s| {
        oracle
            .iter()
            .all(|(w, n)| s.get(w).and_then(|c| c.last()) == Some(n))
    });
    let progress = app.progress();
    let aborts = progress.aborts.load(std::sync::atomic::Ordering::Relaxed);
    if aborts_expected == Aborts::Never {
        assert_eq!(aborts, 0);
    }
    // Nothing of the application stays open on the output once it is idle and closed.
    app.close().unwrap();
    for p in 0..3 {
        let (hw, lso, open) = broker.partition_state("word-counts", p).unwrap();
        assert!(
            open.is_empty() && lso == hw,
            "partition {p}: hw {hw} lso {lso} open {open:?}"
        );
    }
    check(&seen, &oracle, true);
    // Local state is the committed changelog up to the checkpoint: aborted changes never
    // reached RocksDB.
    let local = eddy_testkit::local_state_matches_changelogs(
        &broker.bootstrap(),
        "wc-eos",
        &dir.path().join("wc-eos"),
    )
    .unwrap();
    assert!(
        local.checkpointed > 0 && local.entries > 0,
        "checkpointed stores were compared: {local:?}"
    );
    if aborts_expected == Aborts::Expected && aborts > 0 {
        // Aborted transactions left records in the log that read_committed never shows.
        let chosen = |t: &str| t == "word-counts" || t.starts_with("wc-eos-");
        let committed = eddy_testkit::count_records(&broker.bootstrap(), "read_committed", chosen);
        let in_log = eddy_testkit::count_records(&broker.bootstrap(), "read_uncommitted", chosen);
        assert!(
            in_log > committed,
            "aborted writes are in the log ({in_log}) but not read_committed ({committed})"
        );
    }
    aborts
}

#[test]
fn two_workers_share_the_partitions_at_least_once() {
    logs();
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("text-lines", 4);
    broker.create_topic("word-counts", 4);
    let dir = tempfile::tempdir().unwrap();
    let start = |n: usize| {
        KafkaStreams::start(
            eddy_topologies::word_count().unwrap(),
            RuntimeConfig::new(
                config("wc-alos", "at_least_once", &dir.path().join(n.to_string())),
                broker.bootstrap(),
            ),
        )
        .unwrap()
    };
    let a = start(0);
    let b = start(1);
    // Produce only once the group has settled with both workers holding partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    let holds = |app: &KafkaStreams| {
        app.progress()
            .assigned_partitions
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    };
    while !(holds(&a) && holds(&b)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (input, oracle) = lines(400);
    produce_lines(&broker.bootstrap(), &input);
    let seen = read_counts(&broker.bootstrap(), |s| {
        oracle
            .iter()
            .all(|(w, n)| s.get(w).and_then(|c| c.last()) == Some(n))
    });
    let (pa, pb) = (a.progress(), b.progress());
    a.close().unwrap();
    b.close().unwrap();
    check(&seen, &oracle, false);
    let processed =
        |p: &eddy_engine::Progress| p.records_in.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        processed(&pa) > 0 && processed(&pb) > 0,
        "both workers took part: {} / {}",
        processed(&pa),
        processed(&pb)
    );
}
