//! A restore longer than `max.poll.interval.ms` (a large changelog, every fetch delayed by the
//! broker) does not get the member expelled: the stream thread restores a slice per round and
//! goes on polling, so the group sees one assignment, and the task processes once restored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig, StreamsConfig, StreamsState};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const APP: &str = "wc-long-restore";
const CHANGELOG: &str = "wc-long-restore-word-counts-changelog";
const FETCH: i16 = 1;
const KEYS: usize = 3_000;

#[test]
fn a_restore_longer_than_max_poll_interval_keeps_the_member_in_the_group() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("text-lines", 1);
    broker.create_topic("word-counts", 1);
    broker.create_topic_with_configs(CHANGELOG, 1, &[("cleanup.policy", "compact")]);
    // An earlier owner left a large changelog, in small batches (a fetch returns whole ones).
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("transactional.id", "earlier-owner")
        .set("batch.num.messages", "25")
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(10)).unwrap();
    p.begin_transaction().unwrap();
    for i in 0..KEYS {
        let key = format!("w{i}");
        p.send(
            BaseRecord::to(CHANGELOG)
                .key(&key)
                .payload(&1i64.to_be_bytes()[..]),
        )
        .unwrap();
    }
    p.commit_transaction(Duration::from_secs(30)).unwrap();

    broker.delay_requests(FETCH, Duration::from_millis(250));
    let dir = tempfile::tempdir().unwrap();
    let mut c = StreamsConfig::new(APP);
    c.set("state.dir", dir.path().to_str().unwrap()).unwrap();
    for (k, v) in [
        ("main.consumer.session.timeout.ms", "6000"),
        ("main.consumer.heartbeat.interval.ms", "500"),
        ("main.consumer.max.poll.interval.ms", "6000"),
        // About one batch per fetch: the restore takes over a hundred delayed fetches.
        ("restore.consumer.max.partition.fetch.bytes", "2048"),
    ] {
        c.set(k, v).unwrap();
    }
    let rebalances = Arc::new(AtomicUsize::new(0));
    let runtime = {
        let rebalances = Arc::clone(&rebalances);
        RuntimeConfig::new(c, broker.bootstrap()).with_state_listener(move |new, _| {
            if new == StreamsState::Rebalancing {
                rebalances.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let started = Instant::now();
    let app = KafkaStreams::start(eddy_topologies::word_count().unwrap(), runtime).unwrap();
    let progress = app.progress();
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress.restored.load(Ordering::SeqCst) < KEYS as u64 {
        assert!(Instant::now() < deadline, "restore did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(7),
        "premise: the restore outlasts max.poll.interval.ms ({took:?})"
    );
    assert_eq!(progress.restored.load(Ordering::SeqCst), KEYS as u64);
    broker.clear_faults();

    // Restored and processing: one more `w7` counts on the restored 1.
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    p.send(BaseRecord::to("text-lines").key("l").payload("w7"))
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    let out: BaseConsumer = consumer_from_beginning(
        &broker.bootstrap(),
        "long-restore-check",
        "read_committed",
        |t| t == "word-counts",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut count = None;
    while count.is_none() && Instant::now() < deadline {
        if let Some(Ok(m)) = out.poll(Duration::from_millis(200)) {
            if m.key() == Some(b"w7") {
                let v: [u8; 8] = m.payload().unwrap().try_into().unwrap();
                count = Some(i64::from_be_bytes(v));
            }
        }
    }
    assert_eq!(count, Some(2), "the restored count, plus one");
    assert_eq!(
        rebalances.load(Ordering::SeqCst),
        1,
        "one assignment: the member was never expelled"
    );
    app.close().unwrap();
}
