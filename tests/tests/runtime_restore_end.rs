//! A restore ends where its changelog ends, by position, never by a pause in what arrives: a
//! count of 300 000 distinct keys restored into an empty state directory, with and without the
//! broker delaying every fetch, restores all 300 000 records and counts on from them. An
//! in-memory logged store beside a persistent one restores its whole changelog on a restart
//! (only persistent stores are checkpointed).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, RuntimeConfig, Serdes, StreamsBuilder,
    StreamsConfig, Topology,
};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const FETCH: i16 = 1;
const KEYS: usize = 300_000;
const SAMPLED: usize = 400;

/// `keys` counted per key into `key-counts` (persistent, logged), each new count to
/// `key-counts-out`.
fn key_count() -> Topology {
    let b = StreamsBuilder::new();
    b.stream(
        &["keys"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .group_by_key(Grouped::named("by-key").with(Serdes::string(), Serdes::string()))
    .count(Materialized::named("key-counts"))
    .to_stream()
    .to(
        "key-counts-out",
        Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
    );
    b.build().unwrap()
}

fn config(app: &str, state_dir: &std::path::Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(app);
    c.set("state.dir", state_dir.to_str().unwrap()).unwrap();
    c.set("commit.interval.ms", "100").unwrap();
    c
}

/// Writes the committed changelog of a count that saw every key once: `KEYS` records, in
/// transactions of 50 000 (as an exactly-once worker leaves it: records and markers).
fn fill_changelog(bootstrap: &str, topic: &str) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", "earlier-worker")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(10)).unwrap();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(50_000) {
        p.begin_transaction().unwrap();
        for i in chunk {
            let key = format!("k{i:06}");
            loop {
                match p.send(
                    BaseRecord::to(topic)
                        .partition(0)
                        .key(&key)
                        .payload(&1i64.to_be_bytes()[..]),
                ) {
                    Ok(()) => break,
                    Err(_) => {
                        p.poll(Duration::from_millis(5));
                    }
                }
            }
        }
        p.commit_transaction(Duration::from_secs(60)).unwrap();
    }
}

fn send_keys(bootstrap: &str, keys: &[String]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for k in keys {
        p.send(BaseRecord::to("keys").key(k).payload("x")).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Reads `key-counts-out` (read_committed) until `n` distinct keys have a count or `wait` ends.
fn read_counts(bootstrap: &str, n: usize, wait: Duration) -> BTreeMap<String, i64> {
    let reader: BaseConsumer =
        consumer_from_beginning(bootstrap, "verifier", "read_committed", |t| {
            t == "key-counts-out"
        });
    let mut counts = BTreeMap::new();
    let until = Instant::now() + wait;
    while counts.len() < n && Instant::now() < until {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let count = i64::from_be_bytes(m.payload().unwrap().try_into().unwrap());
            counts.insert(key, count);
        }
    }
    counts
}

fn sampled_keys() -> Vec<String> {
    (0..SAMPLED)
        .map(|i| format!("k{:06}", i * (KEYS / SAMPLED) + 7))
        .collect()
}

/// Restores `KEYS` committed changelog records into an empty state directory, then counts one
/// more record for each sampled key: every count must be 2 and every record restored.
fn restore_all_then_count_on(fault: impl FnOnce(&EmbeddedBroker)) {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("keys", 1);
    broker.create_topic("key-counts-out", 1);
    let changelog = "restore-end-key-counts-changelog";
    broker.create_topic_with_configs(changelog, 1, &[("cleanup.policy", "compact")]);
    fill_changelog(&bootstrap, changelog);
    fault(&broker);
    let dir = tempfile::tempdir().unwrap();
    let app = KafkaStreams::start(
        key_count(),
        RuntimeConfig::new(config("restore-end", dir.path()), &bootstrap),
    )
    .unwrap();
    let keys = sampled_keys();
    send_keys(&bootstrap, &keys);
    let counts = read_counts(&bootstrap, keys.len(), Duration::from_secs(180));
    let restored = app.progress().restored.load(Ordering::Relaxed);
    app.close().unwrap();
    let wrong: Vec<(&String, &i64)> = counts.iter().filter(|(_, c)| **c != 2).collect();
    assert_eq!(
        restored,
        KEYS as u64,
        "restored {restored} of {KEYS} changelog records ({} sampled keys counted wrong)",
        wrong.len()
    );
    assert_eq!(counts.len(), keys.len(), "a count for every sampled key");
    assert!(
        wrong.is_empty(),
        "{} of {SAMPLED} keys counted from a lost state, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

#[test]
fn a_restore_of_300_000_records_restores_all_of_them() {
    restore_all_then_count_on(|_| {});
}

#[test]
fn a_restore_with_delayed_fetches_restores_all_of_them() {
    restore_all_then_count_on(|broker| broker.delay_requests(FETCH, Duration::from_millis(400)));
}

/// The same stream counted into an in-memory logged store and a persistent logged one; after a
/// clean close and a restart on the same state directory both count on from where they were.
#[test]
fn an_in_memory_logged_store_beside_a_persistent_one_is_restored_on_restart() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("keys", 1);
    broker.create_topic("memory-counts", 1);
    broker.create_topic("disk-counts", 1);
    let topology = || {
        let b = StreamsBuilder::new();
        let grouped = b
            .stream(
                &["keys"],
                Consumed::with(Serdes::string(), Serdes::string()),
            )
            .group_by_key(Grouped::named("by-key").with(Serdes::string(), Serdes::string()));
        grouped
            .count(Materialized::named("memory-counts").in_memory())
            .to_stream()
            .to(
                "memory-counts",
                Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
            );
        grouped
            .count(Materialized::named("disk-counts"))
            .to_stream()
            .to(
                "disk-counts",
                Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
            );
        b.build().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        KafkaStreams::start(
            topology(),
            RuntimeConfig::new(config("two-stores", dir.path()), &bootstrap),
        )
        .unwrap()
    };
    // The newest count on `topic`, once it is `expected` or `wait` is over.
    let latest = |topic: &'static str, expected: i64| -> Option<i64> {
        let reader: BaseConsumer =
            consumer_from_beginning(&bootstrap, "verifier", "read_committed", move |t| {
                t == topic
            });
        let mut newest = None;
        let until = Instant::now() + Duration::from_secs(60);
        while newest != Some(expected) && Instant::now() < until {
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
                newest = Some(i64::from_be_bytes(m.payload().unwrap().try_into().unwrap()));
            }
        }
        newest
    };
    let app = start();
    send_keys(&bootstrap, &vec!["a".to_string(); 50]);
    assert_eq!(latest("disk-counts", 50), Some(50));
    assert_eq!(latest("memory-counts", 50), Some(50));
    app.close().unwrap();
    let app = start();
    send_keys(&bootstrap, &["a".to_string()]);
    let (disk, memory) = (latest("disk-counts", 51), latest("memory-counts", 51));
    app.close().unwrap();
    assert_eq!(disk, Some(51), "the persistent store counts on");
    assert_eq!(
        memory,
        Some(51),
        "the in-memory store counts on from its changelog"
    );
}

/// A window store restores through its window layer: a changelog record of a window that has
/// expired by the end of the changelog (retention dropped its segment locally, but the
/// changelog still holds it) is not brought back by a restore into an empty state directory.
#[test]
fn a_window_store_restore_drops_windows_that_expired() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("clicks", 1);
    let topology = || {
        let b = StreamsBuilder::new();
        b.stream(
            &["clicks"],
            Consumed::with(Serdes::string(), Serdes::string()),
        )
        .group_by_key(Grouped::named("by-key").with(Serdes::string(), Serdes::string()))
        .windowed_by(eddy_engine::TimeWindows::of_size_with_no_grace(
            Duration::from_secs(60),
        ))
        .count(Materialized::named("per-minute"));
        b.build().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        KafkaStreams::start(
            topology(),
            RuntimeConfig::new(config("window-restore", dir.path()), &bootstrap),
        )
        .unwrap()
    };
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let day_ms = 86_400_000;
    let base = 1_767_225_600_000i64;
    let wait_for = |app: &KafkaStreams, what: fn(&eddy_engine::Progress) -> u64, n: u64| {
        let until = Instant::now() + Duration::from_secs(60);
        while what(&app.progress()) < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        what(&app.progress())
    };
    let app = start();
    // `a`, committed (so its window reaches the changelog), then `b` ten days later, which
    // puts `a`'s window out of retention.
    for (n, (key, ts)) in [("a", base), ("b", base + 10 * day_ms)]
        .into_iter()
        .enumerate()
    {
        p.send(BaseRecord::to("clicks").key(key).payload("x").timestamp(ts))
            .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(
            wait_for(&app, |p| p.records_in.load(Ordering::Relaxed), n as u64 + 1),
            n as u64 + 1
        );
        let commits = app.progress().commits.load(Ordering::Relaxed);
        wait_for(&app, |p| p.commits.load(Ordering::Relaxed), commits + 2);
    }
    app.close().unwrap();
    std::fs::remove_dir_all(dir.path().join("window-restore")).unwrap();
    let app = start();
    let restored = wait_for(&app, |p| p.restored.load(Ordering::Relaxed), 2);
    app.close().unwrap();
    assert_eq!(restored, 2, "both changelog records were read");
    let env = eddy_state::RocksDbEnv::new(eddy_state::RocksDbMemoryConfig {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
    });
    let db = eddy_state::RocksDbInstance::open(&env, dir.path().join("window-restore").join("0_0"))
        .unwrap();
    let windows = {
        use eddy_state::KeyValueStore;
        let store = db.key_value_store("per-minute").unwrap();
        store.all().unwrap().count()
    };
    assert_eq!(windows, 1, "only b's window is live after the restore");
}
