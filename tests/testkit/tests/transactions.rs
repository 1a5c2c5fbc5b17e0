//! Transactions through rdkafka: committed records and offsets become visible to
//! read_committed together; aborted ones never do; an open transaction holds read_committed at
//! the last stable offset; a zombie producer is fenced; a transaction past its timeout is aborted.
//! With `EDDY_TEST_BOOTSTRAP=host:port` the same tests run against any broker.

use std::time::{Duration, Instant};

use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

struct Target {
    bootstrap: String,
    _embedded: Option<EmbeddedBroker>,
}

fn target(topics: &[&str]) -> Target {
    match std::env::var("EDDY_TEST_BOOTSTRAP") {
        Ok(bootstrap) => Target {
            bootstrap,
            _embedded: None,
        },
        Err(_) => {
            let broker = EmbeddedBroker::start().unwrap();
            for t in topics {
                broker.create_topic(t, 1);
            }
            Target {
                bootstrap: broker.bootstrap(),
                _embedded: Some(broker),
            }
        }
    }
}

fn txn_producer(bootstrap: &str, id: &str, timeout_ms: u32) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .set("linger.ms", "0")
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(10)).unwrap();
    p
}

/// Creates `name` with `cleanup.policy=compact` through the admin API.
fn create_compacted_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let topic =
        rdkafka::admin::NewTopic::new(name, partitions, rdkafka::admin::TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact");
    for r in rt
        .block_on(admin.create_topics(&[topic], &rdkafka::admin::AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
}

fn send(p: &BaseProducer, topic: &str, values: &[&str]) {
    for v in values {
        p.send(BaseRecord::to(topic).key("k").payload(*v)).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// The values a consumer with `isolation` sees within `wait`.
fn visible(bootstrap: &str, topic: &str, isolation: &str, wait: Duration) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("reader-{isolation}-{}", std::process::id()),
        )
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    out
}

#[test]
fn committed_is_visible_aborted_is_not_and_open_holds_the_stable_offset() {
    let t = target(&["txn-data", "txn-input"]);
    let p = txn_producer(&t.bootstrap, "txn-a", 60_000);

    p.begin_transaction().unwrap();
    send(&p, "txn-data", &["c1", "c2"]);
    p.commit_transaction(Duration::from_secs(10)).unwrap();

    p.begin_transaction().unwrap();
    send(&p, "txn-data", &["a1", "a2"]);
    p.abort_transaction(Duration::from_secs(10)).unwrap();

    p.begin_transaction().unwrap();
    send(&p, "txn-data", &["open1"]);
    // Open: read_uncommitted sees it, read_committed stops at the last stable offset.
    let committed_view = visible(
        &t.bootstrap,
        "txn-data",
        "read_committed",
        Duration::from_millis(1500),
    );
    assert_eq!(committed_view, vec!["c1", "c2"]);
    let uncommitted_view = visible(
        &t.bootstrap,
        "txn-data",
        "read_uncommitted",
        Duration::from_millis(1500),
    );
    assert_eq!(uncommitted_view, vec!["c1", "c2", "a1", "a2", "open1"]);

    p.commit_transaction(Duration::from_secs(10)).unwrap();
    let after = visible(
        &t.bootstrap,
        "txn-data",
        "read_committed",
        Duration::from_millis(1500),
    );
    assert_eq!(
        after,
        vec!["c1", "c2", "open1"],
        "aborted records never show; the commit releases the rest"
    );
}

#[test]
fn offsets_commit_with_the_transaction_and_not_when_it_aborts() {
    let t = target(&["txn-out", "txn-src"]);
    let group = format!("txn-group-{}", std::process::id());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &t.bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let p = txn_producer(&t.bootstrap, "txn-offsets", 60_000);
    let offsets = |n: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("txn-src", 0, rdkafka::Offset::Offset(n))
            .unwrap();
        tpl
    };
    let group_metadata = consumer.group_metadata().unwrap();

    p.begin_transaction().unwrap();
    send(&p, "txn-out", &["x"]);
    p.send_offsets_to_transaction(&offsets(5), &group_metadata, Duration::from_secs(10))
        .unwrap();
    p.abort_transaction(Duration::from_secs(10)).unwrap();
    let mut query = TopicPartitionList::new();
    query.add_partition("txn-src", 0);
    let after_abort = consumer
        .committed_offsets(query.clone(), Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        after_abort.elements()[0].offset(),
        rdkafka::Offset::Invalid,
        "an aborted transaction commits no offset"
    );

    p.begin_transaction().unwrap();
    send(&p, "txn-out", &["y"]);
    p.send_offsets_to_transaction(&offsets(7), &group_metadata, Duration::from_secs(10))
        .unwrap();
    p.commit_transaction(Duration::from_secs(10)).unwrap();
    let after_commit = consumer
        .committed_offsets(query, Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        after_commit.elements()[0].offset(),
        rdkafka::Offset::Offset(7)
    );
    assert_eq!(
        visible(
            &t.bootstrap,
            "txn-out",
            "read_committed",
            Duration::from_millis(1500)
        ),
        vec!["y"]
    );
}

#[test]
fn a_zombie_producer_is_fenced_and_its_open_transaction_aborted() {
    let t = target(&["txn-zombie"]);
    let zombie = txn_producer(&t.bootstrap, "txn-z", 60_000);
    zombie.begin_transaction().unwrap();
    send(&zombie, "txn-zombie", &["from-zombie"]);
    // A new instance with the same transactional id takes over.
    let fresh = txn_producer(&t.bootstrap, "txn-z", 60_000);
    let err = zombie
        .commit_transaction(Duration::from_secs(10))
        .unwrap_err();
    assert!(
        matches!(&err, KafkaError::Transaction(e) if e.is_fatal()),
        "the zombie is fenced: {err:?}"
    );
    fresh.begin_transaction().unwrap();
    send(&fresh, "txn-zombie", &["from-fresh"]);
    fresh.commit_transaction(Duration::from_secs(10)).unwrap();
    assert_eq!(
        visible(
            &t.bootstrap,
            "txn-zombie",
            "read_committed",
            Duration::from_millis(1500)
        ),
        vec!["from-fresh"]
    );
}

#[test]
fn a_transaction_past_its_timeout_is_aborted() {
    let t = target(&["txn-timeout"]);
    let p = txn_producer(&t.bootstrap, "txn-slow", 1_000);
    p.begin_transaction().unwrap();
    send(&p, "txn-timeout", &["too-late"]);
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(
        p.commit_transaction(Duration::from_secs(10)).is_err(),
        "the broker aborted it"
    );
    assert!(visible(
        &t.bootstrap,
        "txn-timeout",
        "read_committed",
        Duration::from_millis(1500)
    )
    .is_empty());
}

#[test]
fn compaction_keeps_committed_values_of_a_transactional_topic() {
    let broker = EmbeddedBroker::start().unwrap();
    let b = broker.bootstrap();
    create_compacted_topic(&b, "txn-compacted", 1);
    let p = txn_producer(&b, "txn-compact", 60_000);
    let mut expected = std::collections::BTreeMap::new();
    for round in 0..6 {
        p.begin_transaction().unwrap();
        for k in 0..5 {
            let key = format!("k{k}");
            let value = format!("r{round}");
            p.send(BaseRecord::to("txn-compacted").key(&key).payload(&value))
                .unwrap();
            if round % 3 != 2 {
                expected.insert(key, value);
            }
        }
        p.flush(Duration::from_secs(10)).unwrap();
        if round % 3 == 2 {
            p.abort_transaction(Duration::from_secs(10)).unwrap();
        } else {
            p.commit_transaction(Duration::from_secs(10)).unwrap();
        }
        if round == 3 {
            broker.compact_now();
        }
    }
    broker.compact_now();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "compacted-reader")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("txn-compacted", 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut latest = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            latest.insert(
                String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
            );
        }
    }
    assert_eq!(latest, expected);
}

/// The background log cleaner compacts a transactional, multi-partition topic while two
/// producers commit and abort and a read_committed consumer follows it: the consumer (and one
/// reading from the beginning afterwards) ends with the newest committed value of every key.
#[test]
fn background_compaction_keeps_committed_values_for_a_following_consumer() {
    let broker = EmbeddedBroker::start_with(eddy_testkit::BrokerConfig {
        compaction_interval: Some(Duration::from_millis(20)),
        ..Default::default()
    })
    .unwrap();
    let b = broker.bootstrap();
    create_compacted_topic(&b, "bg-compacted", 4);
    let reader = |group: &str| {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", group)
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition_offset("bg-compacted", p, rdkafka::Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        c
    };
    let follower = reader("follower");
    let mut followed = std::collections::BTreeMap::new();
    let follow = |c: &BaseConsumer,
                  followed: &mut std::collections::BTreeMap<(i32, String), String>,
                  until: Duration| {
        let deadline = Instant::now() + until;
        while Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(10)) {
                followed.insert(
                    (
                        m.partition(),
                        String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                    ),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
                );
            }
        }
    };
    let producers = [
        txn_producer(&b, "bg-a", 60_000),
        txn_producer(&b, "bg-b", 60_000),
    ];
    let mut expected = std::collections::BTreeMap::new();
    for round in 0..30 {
        let p = &producers[round % 2];
        p.begin_transaction().unwrap();
        let mut written = Vec::new();
        for k in 0..8 {
            let key = format!("k{k}");
            let value = format!("r{round}");
            let partition = k % 4;
            p.send(
                BaseRecord::to("bg-compacted")
                    .partition(partition)
                    .key(&key)
                    .payload(&value),
            )
            .unwrap();
            written.push(((partition, key), value));
        }
        p.flush(Duration::from_secs(10)).unwrap();
        follow(&follower, &mut followed, Duration::from_millis(30));
        if round % 4 == 3 {
            p.abort_transaction(Duration::from_secs(10)).unwrap();
        } else {
            p.commit_transaction(Duration::from_secs(10)).unwrap();
            expected.extend(written);
        }
        follow(&follower, &mut followed, Duration::from_millis(30));
    }
    follow(&follower, &mut followed, Duration::from_secs(2));
    assert_eq!(followed, expected, "the following consumer");
    let late = reader("late-reader");
    let mut from_start = std::collections::BTreeMap::new();
    follow(&late, &mut from_start, Duration::from_secs(2));
    assert_eq!(
        from_start, expected,
        "a consumer reading from the beginning"
    );
}

/// KIP-447 zombie fencing: offsets sent to a transaction with the group metadata of a
/// generation the group has moved past (a member that missed a rebalance) are refused, and the
/// transaction must abort; the same offsets with the current metadata commit.
#[test]
fn offsets_sent_with_a_stale_group_generation_are_refused() {
    let t = target(&["txn-fence-a", "txn-fence-b", "txn-fence-out"]);
    let group = format!("txn-fence-{}", std::process::id());
    let member = || -> BaseConsumer {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &t.bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "roundrobin")
            .set("session.timeout.ms", "10000")
            .create()
            .unwrap();
        c.subscribe(&["txn-fence-a", "txn-fence-b"]).unwrap();
        c
    };
    let assigned = |c: &BaseConsumer| c.assignment().map_or(0, |a| a.count());
    let first = member();
    let until = Instant::now() + Duration::from_secs(30);
    while assigned(&first) < 2 && Instant::now() < until {
        first.poll(Duration::from_millis(50));
    }
    assert_eq!(assigned(&first), 2, "the first member has both partitions");
    let stale = first.group_metadata().unwrap();
    // A second member joins: a new generation gives each member one partition.
    let second = member();
    let until = Instant::now() + Duration::from_secs(30);
    while (assigned(&first) != 1 || assigned(&second) != 1) && Instant::now() < until {
        first.poll(Duration::from_millis(20));
        second.poll(Duration::from_millis(20));
    }
    assert_eq!((assigned(&first), assigned(&second)), (1, 1));
    let mine = first.assignment().unwrap();
    let offsets = |n: i64| {
        let mut tpl = TopicPartitionList::new();
        for e in mine.elements() {
            tpl.add_partition_offset(e.topic(), e.partition(), rdkafka::Offset::Offset(n))
                .unwrap();
        }
        tpl
    };
    let p = txn_producer(&t.bootstrap, "txn-fence", 60_000);
    p.begin_transaction().unwrap();
    send(&p, "txn-fence-out", &["zombie"]);
    let refused = p.send_offsets_to_transaction(&offsets(3), &stale, Duration::from_secs(10));
    match refused {
        Err(KafkaError::Transaction(e)) => assert!(e.txn_requires_abort(), "{e}"),
        other => panic!("stale generation accepted: {other:?}"),
    }
    p.abort_transaction(Duration::from_secs(10)).unwrap();
    p.begin_transaction().unwrap();
    send(&p, "txn-fence-out", &["member"]);
    let current = first.group_metadata().unwrap();
    p.send_offsets_to_transaction(&offsets(3), &current, Duration::from_secs(10))
        .unwrap();
    p.commit_transaction(Duration::from_secs(10)).unwrap();
    assert_eq!(
        visible(
            &t.bootstrap,
            "txn-fence-out",
            "read_committed",
            Duration::from_millis(1500)
        ),
        vec!["member"]
    );
}

/// Compaction must not let a value written by a transaction that is still open replace a
/// committed one: when that transaction aborts, the committed value is what a restore reads.
#[test]
fn compaction_keeps_a_committed_value_that_an_open_transaction_overwrites() {
    let broker = EmbeddedBroker::start().unwrap();
    let b = broker.bootstrap();
    create_compacted_topic(&b, "txn-compact-open", 1);
    let committed = txn_producer(&b, "txn-compact-committed", 60_000);
    committed.begin_transaction().unwrap();
    send(&committed, "txn-compact-open", &["v1"]);
    committed
        .commit_transaction(Duration::from_secs(10))
        .unwrap();
    let open = txn_producer(&b, "txn-compact-zombie", 60_000);
    open.begin_transaction().unwrap();
    send(&open, "txn-compact-open", &["v2"]);
    open.flush(Duration::from_secs(10)).unwrap();
    broker.compact_now();
    open.abort_transaction(Duration::from_secs(10)).unwrap();
    broker.compact_now();
    assert_eq!(
        visible(
            &b,
            "txn-compact-open",
            "read_committed",
            Duration::from_millis(1500)
        ),
        vec!["v1"]
    );
}
