//! Restoring a task from a changelog that a dead worker left with an open transaction: the
//! restore waits for that transaction to be decided and reads what was committed after it.

use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig, StreamsConfig};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

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

/// The changelog of the count store holds, in order: an open transaction (a worker killed in
/// the middle of a commit, 3 s transaction timeout) and a committed count of 5 for "alpha".
/// The last stable offset stays in front of both until the broker aborts the dead transaction.
/// A restore that stopped at the last stable offset would start from an empty store and count
/// the next "alpha" as 1; the restore must wait and count it as 6.
#[test]
fn restore_waits_for_a_dead_workers_transaction_and_reads_what_was_committed_after_it() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    let changelog = "wc-restore-word-counts-changelog";
    broker.create_topic("text-lines", 1);
    broker.create_topic("word-counts", 1);
    broker.create_topic(changelog, 1);
    let dead = transactional(&bootstrap, "dead-worker", 3_000);
    dead.begin_transaction().unwrap();
    dead.send(
        BaseRecord::to(changelog)
            .key("alpha")
            .payload(&99i64.to_be_bytes()[..]),
    )
    .unwrap();
    dead.flush(Duration::from_secs(10)).unwrap();
    let live = transactional(&bootstrap, "earlier-owner", 60_000);
    live.begin_transaction().unwrap();
    live.send(
        BaseRecord::to(changelog)
            .key("alpha")
            .payload(&5i64.to_be_bytes()[..]),
    )
    .unwrap();
    live.commit_transaction(Duration::from_secs(10)).unwrap();
    let (_, lso, open) = broker.partition_state(changelog, 0).unwrap();
    assert!(
        lso == 0 && !open.is_empty(),
        "the dead transaction holds the LSO at 0"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new("wc-restore");
    config
        .set("state.dir", dir.path().to_str().unwrap())
        .unwrap();
    config.set("commit.interval.ms", "100").unwrap();
    let app = KafkaStreams::start(
        eddy_topologies::word_count().unwrap(),
        RuntimeConfig::new(config, bootstrap.clone()),
    )
    .unwrap();
    let input: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    input
        .send(BaseRecord::to("text-lines").key("l0").payload("alpha"))
        .unwrap();
    input.flush(Duration::from_secs(10)).unwrap();

    let c = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == "word-counts"
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut counts = Vec::new();
    while Instant::now() < deadline && counts.is_empty() {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            counts.push(i64::from_be_bytes(m.payload().unwrap().try_into().unwrap()));
        }
    }
    let restored = app
        .progress()
        .restored
        .load(std::sync::atomic::Ordering::Relaxed);
    app.close().unwrap();
    assert_eq!(
        counts,
        vec![6],
        "the committed 5 was restored, the dead write was not"
    );
    assert_eq!(restored, 1, "one committed changelog record restored");
    drop(dead);
}
