//! Restoring a task's state before it processes: from a changelog that a dead worker left with
//! an open transaction (the restore waits for it to be decided and reads what was committed
//! after it; a worker restarted on the dead one's state directory aborts it at once), when the
//! broker refuses or delays the restore's requests, when the application closes mid-restore,
//! and from a changelog whose first records were deleted.

use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig, StreamsConfig};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const APP: &str = "wc-restore";
/// The changelog of the word count's store.
const CHANGELOG: &str = "wc-restore-word-counts-changelog";
const LIST_OFFSETS: i16 = 2;

/// A broker with the word count's input and output topics, and its changelog created ahead.
fn broker() -> EmbeddedBroker {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("text-lines", 1);
    broker.create_topic("word-counts", 1);
    broker.create_topic_with_configs(CHANGELOG, 1, &[("cleanup.policy", "compact")]);
    broker
}

fn transactional(bootstrap: &str, id: &str, timeout_ms: u32) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(10)).unwrap();
    p
}

/// A worker that dies mid-commit: producer `id` leaves a transaction open that writes the count
/// `count` of `word` to each of `topics`. Keep the producer alive while it must stay open.
fn open_transaction(
    bootstrap: &str,
    id: &str,
    timeout_ms: u32,
    topics: &[&str],
    (word, count): (&str, i64),
) -> BaseProducer {
    let p = transactional(bootstrap, id, timeout_ms);
    p.begin_transaction().unwrap();
    for topic in topics {
        p.send(
            BaseRecord::to(topic)
                .key(word)
                .payload(&count.to_be_bytes()[..]),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    p
}

/// An earlier owner of the task committed the count `count` of `word` to the changelog.
fn commit_to_changelog(bootstrap: &str, (word, count): (&str, i64)) {
    let p = transactional(bootstrap, "earlier-owner", 60_000);
    p.begin_transaction().unwrap();
    p.send(
        BaseRecord::to(CHANGELOG)
            .key(word)
            .payload(&count.to_be_bytes()[..]),
    )
    .unwrap();
    p.commit_transaction(Duration::from_secs(10)).unwrap();
}

fn word_count_app(bootstrap: &str, state_dir: &std::path::Path) -> KafkaStreams {
    KafkaStreams::start(
        eddy_topologies::word_count().unwrap(),
        RuntimeConfig::new(app_config(state_dir), bootstrap),
    )
    .unwrap()
}

fn app_config(state_dir: &std::path::Path) -> StreamsConfig {
    let mut config = StreamsConfig::new(APP);
    config
        .set("state.dir", state_dir.to_str().unwrap())
        .unwrap();
    config.set("commit.interval.ms", "100").unwrap();
    config
}

fn send_line(bootstrap: &str, key: &str, line: &str) {
    let input: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    input
        .send(BaseRecord::to("text-lines").key(key).payload(line))
        .unwrap();
    input.flush(Duration::from_secs(10)).unwrap();
}

/// Reads `word-counts` (read_committed) from the beginning.
fn counts_reader(bootstrap: &str) -> BaseConsumer {
    consumer_from_beginning(bootstrap, "verifier", "read_committed", |t| {
        t == "word-counts"
    })
}

/// The next count on `word-counts`, if one comes within `wait`.
fn next_count(counts: &BaseConsumer, wait: Duration) -> Option<i64> {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if let Some(Ok(m)) = counts.poll(Duration::from_millis(50)) {
            return Some(i64::from_be_bytes(m.payload()?.try_into().ok()?));
        }
    }
    None
}

fn restored(app: &KafkaStreams) -> u64 {
    app.progress()
        .restored
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// The changelog of the count store holds, in order: an open transaction (a worker killed in
/// the middle of a commit, 3 s transaction timeout) and a committed count of 5 for "alpha".
/// The last stable offset stays in front of both until the broker aborts the dead transaction.
/// A restore that stopped at the last stable offset would start from an empty store and count
/// the next "alpha" as 1; the restore must wait and count it as 6.
#[test]
fn restore_waits_for_a_dead_workers_transaction_and_reads_what_was_committed_after_it() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let dead = open_transaction(
        &bootstrap,
        "dead-worker",
        3_000,
        &[CHANGELOG],
        ("alpha", 99),
    );
    commit_to_changelog(&bootstrap, ("alpha", 5));
    let (_, lso, open) = broker.partition_state(CHANGELOG, 0).unwrap();
    assert!(
        lso == 0 && !open.is_empty(),
        "the dead transaction holds the LSO at 0"
    );

    let dir = tempfile::tempdir().unwrap();
    let app = word_count_app(&bootstrap, dir.path());
    send_line(&bootstrap, "l0", "alpha");
    let count = next_count(&counts_reader(&bootstrap), Duration::from_secs(60));
    let restored = restored(&app);
    app.close().unwrap();
    assert_eq!(
        count,
        Some(6),
        "the committed 5 was restored, the dead write was not"
    );
    assert_eq!(restored, 1, "one committed changelog record restored");
    drop(dead);
}

/// A worker dies in the middle of a transaction that would not time out for 10 minutes (its
/// count of 99 for "alpha" in the output and the changelog). Restarted on its state directory,
/// the worker keeps its process id, so its producer takes over the dead one's transactional id:
/// `init_transactions` aborts the open transaction, and the restore, which waits for open
/// transactions on the changelog, goes on at once. Without the kept id the restore would wait
/// out the 10 minutes (the test gives it one).
#[test]
fn a_restarted_worker_aborts_its_predecessors_open_transaction_at_once() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();

    let first = word_count_app(&bootstrap, dir.path());
    // A second instance on the same state directory is refused: it would share the ids.
    let refused = KafkaStreams::start(
        eddy_topologies::word_count().unwrap(),
        RuntimeConfig::new(app_config(dir.path()), bootstrap.clone()),
    )
    .unwrap_err();
    assert!(
        refused.to_string().contains("in use by another instance"),
        "{refused}"
    );
    send_line(&bootstrap, "l0", "alpha alpha");
    let counts = counts_reader(&bootstrap);
    let mut seen = Vec::new();
    while seen.last() != Some(&2) {
        seen.push(next_count(&counts, Duration::from_secs(60)).expect("a count of the first run"));
    }
    first.close().unwrap();

    let process_id =
        std::fs::read_to_string(dir.path().join(APP).join("eddy-process-metadata")).unwrap();
    let dead = open_transaction(
        &bootstrap,
        &format!("{APP}-{}-0", process_id.trim()),
        600_000,
        &[CHANGELOG, "word-counts"],
        ("alpha", 99),
    );
    let (_, _, open) = broker.partition_state(CHANGELOG, 0).unwrap();
    assert!(!open.is_empty(), "the dead worker's transaction is open");

    let restarted = word_count_app(&bootstrap, dir.path());
    send_line(&bootstrap, "l1", "alpha");
    let after_restart = next_count(&counts, Duration::from_secs(60));
    let restored = restored(&restarted);
    restarted.close().unwrap();
    assert_eq!(
        after_restart,
        Some(3),
        "counted on from the checkpoint, without the dead write, within a minute"
    );
    assert_eq!(restored, 0, "the checkpoint was at the changelog's end");
    for topic in [CHANGELOG, "word-counts"] {
        let (hw, lso, open) = broker.partition_state(topic, 0).unwrap();
        assert!(
            open.is_empty() && lso == hw,
            "{topic}: hw {hw} lso {lso} open {open:?}"
        );
    }
    std::mem::forget(dead); // it was fenced; dropping it would only log the fencing
}

/// Closing the application while a restore waits for a dead worker's transaction (10 minutes
/// from timing out) stops the restore: `close` returns, cleanly, instead of waiting it out.
#[test]
fn closing_stops_a_restore_that_waits_for_an_open_transaction() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let dead = open_transaction(
        &bootstrap,
        "another-dead-worker",
        600_000,
        &[CHANGELOG],
        ("alpha", 99),
    );

    let dir = tempfile::tempdir().unwrap();
    let app = word_count_app(&bootstrap, dir.path());
    let progress = app.progress();
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress
        .assigned_partitions
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the partition was never assigned"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500)); // the restore is waiting by now
    let (done, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(app.close()));
    let result = closed
        .recv_timeout(Duration::from_secs(60))
        .expect("close returned while the restore was waiting");
    result.expect("a restore cut short by closing is no failure");
    drop(dead);
}

/// The broker refuses the restore's first request for the changelog's offsets (ListOffsets).
/// librdkafka retries it, and has then been seen to answer with the end offset as the start:
/// a restore that started there restored nothing and counted the next "alpha" as 1.
#[test]
fn a_refused_offsets_query_still_restores_everything() {
    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    // Should the refusal reach the restore as an error instead, the task is opened again:
    // either way the count goes on from 5.
    count_after_restore_with_fault(|broker| {
        broker.fail_requests(LIST_OFFSETS, TOPIC_AUTHORIZATION_FAILED, Some(1))
    });
}

/// The restore's offsets query gets no answer for 11 s, past its 10 s timeout: the task fails
/// to open. The thread rewinds and opens it again instead of stopping.
#[test]
fn a_task_that_fails_to_open_is_opened_again() {
    let aborts = count_after_restore_with_fault(|broker| {
        broker.delay_next_requests(LIST_OFFSETS, Duration::from_secs(11), Some(1))
    });
    assert!(aborts >= 1, "the failed opening was seen and retried");
}

/// A committed count of 5 for "alpha" in the changelog, one more "alpha" in the input, `fault`
/// armed just before the application starts (after the verifier found its start, so that the
/// restore's requests are the first to meet it). The application must count 6 and keep
/// running. Returns the number of aborts it went through.
fn count_after_restore_with_fault(fault: impl Fn(&EmbeddedBroker)) -> u64 {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    commit_to_changelog(&bootstrap, ("alpha", 5));
    send_line(&bootstrap, "l0", "alpha");
    let counts = counts_reader(&bootstrap);
    assert!(counts.poll(Duration::from_millis(500)).is_none());
    fault(&broker);

    let dir = tempfile::tempdir().unwrap();
    let app = word_count_app(&bootstrap, dir.path());
    let count = next_count(&counts, Duration::from_secs(60));
    let progress = app.progress();
    let running = app.is_running();
    app.close().unwrap();
    assert!(running, "the stream thread kept running");
    assert_eq!(count, Some(6), "the restored 5, plus one");
    progress.aborts.load(std::sync::atomic::Ordering::Relaxed)
}

/// The changelog's first records were deleted (its log starts at 2, DeleteRecords): a restore
/// without a checkpoint reads what is left, from the log's start.
#[test]
fn a_restore_starts_where_the_changelog_starts() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for (word, count) in [("alpha", 1i64), ("beta", 1), ("alpha", 2), ("beta", 2)] {
        p.send(
            BaseRecord::to(CHANGELOG)
                .key(word)
                .payload(&count.to_be_bytes()[..]),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(broker.delete_records(CHANGELOG, 0, 2), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let app = word_count_app(&bootstrap, dir.path());
    send_line(&bootstrap, "l0", "alpha");
    let count = next_count(&counts_reader(&bootstrap), Duration::from_secs(60));
    let restored = restored(&app);
    app.close().unwrap();
    assert_eq!(count, Some(3), "alpha's 2 from the changelog, plus one");
    assert_eq!(restored, 2, "the two records left in the changelog");
}
