//! The runtime against a raw rdkafka passthrough, on one embedded broker: records/s of a plain
//! and a transactional (commit every 100 ms) consume→produce loop, a stateless topology, a
//! windowed count under exactly-once and at-least-once, issue 10's emit-final and emit-on-update
//! windowed counts, a stream–table join and a repartition, with 100-byte values. Prints one
//! table with each figure's ratio to the plain passthrough. Every clock starts at the first
//! record consumed, so group joins and start-up are left out; every topology's output is read
//! back (read_committed) and checked after its clock stops. Then Nexmark on the broker
//! (`benches/src/on_broker.rs`; `-- nexmark` runs only that, `EDDY_NEXMARK_ONLY=q4` only one
//! query; a wrong result is printed whole on stderr) and the restore figures.
//! `cargo bench -p eddy-benches --bench runtime`

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy_benches::on_broker::{bulk_producer, nexmark, print_nexmark};
use eddy_benches::read_back::read_back;
use eddy_engine::EmitStrategy;
use eddy_engine::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, RuntimeConfig, Serdes, StreamsBuilder,
    StreamsConfig, TimeWindows, Topology,
};
use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const RECORDS: usize = 200_000;

fn fill(bootstrap: &str, topic: &str) {
    let p = bulk_producer(bootstrap);
    let payload = vec![b'x'; 100];
    for i in 0..RECORDS {
        let key = format!("k{}", i % 1000);
        while p
            .send(BaseRecord::to(topic).key(&key).payload(&payload))
            .is_err()
        {
            p.poll(Duration::from_millis(1));
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Issue 10's workload: 10 000 keys, ~100-byte JSON values, event time 1 ms apart.
fn fill_events(bootstrap: &str, topic: &str) {
    let p = bulk_producer(bootstrap);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - RECORDS as i64;
    for i in 0..RECORDS as u64 {
        let (key, value) = eddy_benches::windows::record(i);
        while p
            .send(
                BaseRecord::to(topic)
                    .key(&key)
                    .payload(&value)
                    .timestamp(base + i as i64),
            )
            .is_err()
        {
            p.poll(Duration::from_millis(1));
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// The table of the join: one row per key of `bench-in` (`k0`..`k999`).
fn fill_table(bootstrap: &str, topic: &str) {
    let p = bulk_producer(bootstrap);
    for i in 0..1000 {
        let key = format!("k{i}");
        let value = format!("row-{i}");
        p.send(BaseRecord::to(topic).key(&key).payload(&value))
            .unwrap();
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

fn passthrough(bootstrap: &str, transactional: bool) -> f64 {
    let group = if transactional {
        "pass-txn"
    } else {
        "pass-plain"
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["bench-in"]).unwrap();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000");
    if transactional {
        config.set("transactional.id", "bench-passthrough");
    }
    let producer: BaseProducer = config.create().unwrap();
    if transactional {
        producer.init_transactions(Duration::from_secs(10)).unwrap();
        producer.begin_transaction().unwrap();
    }
    let out = format!("bench-out-{group}");
    let mut started = None;
    let mut last_commit = Instant::now();
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen = 0;
    let commit =
        |producer: &BaseProducer, consumer: &BaseConsumer, offsets: &BTreeMap<i32, i64>| {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in offsets {
                tpl.add_partition_offset("bench-in", *p, Offset::Offset(*o))
                    .unwrap();
            }
            if transactional {
                producer
                    .send_offsets_to_transaction(
                        &tpl,
                        &consumer.group_metadata().unwrap(),
                        Duration::from_secs(10),
                    )
                    .unwrap();
                producer
                    .commit_transaction(Duration::from_secs(30))
                    .unwrap();
                producer.begin_transaction().unwrap();
            } else {
                // `BaseProducer::flush` serves deliveries in 100 ms slices; wait only as long
                // as the deliveries take.
                let _ = producer.flush(Duration::ZERO);
                while producer.in_flight_count() > 0 {
                    producer.poll(Duration::from_millis(1));
                }
                if tpl.count() > 0 {
                    consumer.commit(&tpl, CommitMode::Sync).unwrap();
                }
            }
        };
    while seen < RECORDS {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
            started.get_or_insert_with(Instant::now);
            while producer
                .send(
                    BaseRecord::to(&out)
                        .key(m.key().unwrap_or_default())
                        .payload(m.payload().unwrap_or_default()),
                )
                .is_err()
            {
                producer.poll(Duration::from_millis(1));
            }
            offsets.insert(m.partition(), m.offset() + 1);
            seen += 1;
        }
        producer.poll(Duration::ZERO);
        if last_commit.elapsed() >= Duration::from_millis(100) {
            commit(&producer, &consumer, &offsets);
            last_commit = Instant::now();
        }
    }
    commit(&producer, &consumer, &offsets);
    let started = started.unwrap_or_else(Instant::now);
    RECORDS as f64 / started.elapsed().as_secs_f64()
}

fn run_topology(bootstrap: &str, app: &str, topology: Topology, guarantee: &str) -> f64 {
    run_topology_reading(bootstrap, app, topology, guarantee, RECORDS as u64)
}

/// Runs `topology` until it has read `expected_in` records (every source counts: a table's
/// rows, a repartition topic's records) and returns the input records per second.
fn run_topology_reading(
    bootstrap: &str,
    app: &str,
    topology: Topology,
    guarantee: &str,
    expected_in: u64,
) -> f64 {
    let dir = std::env::temp_dir().join(format!("eddy-bench-{app}-{}", std::process::id()));
    let mut streams = StreamsConfig::new(app);
    streams.set("processing.guarantee", guarantee).unwrap();
    streams.set("commit.interval.ms", "100").unwrap();
    streams.state_dir = dir.clone();
    let streams_app =
        KafkaStreams::start(topology, RuntimeConfig::new(streams, bootstrap)).unwrap();
    let progress = streams_app.progress();
    while progress.records_in.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    while progress.records_in.load(Ordering::Relaxed) < expected_in {
        std::thread::sleep(Duration::from_millis(10));
    }
    let rate = RECORDS as f64 / started.elapsed().as_secs_f64();
    streams_app.close().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    rate
}

fn stateless() -> Topology {
    let b = StreamsBuilder::new();
    b.stream(
        &["bench-in"],
        Consumed::with(Serdes::string(), Serdes::bytes()),
    )
    .filter(|_, v| !v.is_empty())
    .map_values(|mut v: Vec<u8>| {
        v.reverse();
        v
    })
    .to(
        "bench-stateless-out",
        Produced::with(Serdes::string(), Serdes::bytes()),
    );
    b.build().unwrap()
}

fn issue_windowed_count(emit: EmitStrategy, out: &str) -> Topology {
    eddy_benches::windows::windowed_count(emit, "bench-events", out)
}

fn stream_table_join() -> Topology {
    let b = StreamsBuilder::new();
    let table = b.table(
        "bench-table",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::named("bench-table-rows"),
    );
    b.stream(
        &["bench-in"],
        Consumed::with(Serdes::string(), Serdes::bytes()),
    )
    // A left join, so that every record comes out, rows or not (the feed gives each key a row).
    .left_join_table(&table, |v: &Vec<u8>, row: Option<&String>| {
        let mut out = row.cloned().unwrap_or_default().into_bytes();
        out.extend_from_slice(&v[..8.min(v.len())]);
        out
    })
    .to(
        "bench-join-out",
        Produced::with(Serdes::string(), Serdes::bytes()),
    );
    b.build().unwrap()
}

fn repartition() -> Topology {
    let b = StreamsBuilder::new();
    b.stream(
        &["bench-in"],
        Consumed::with(Serdes::string(), Serdes::bytes()),
    )
    .select_key(|k: &String, _| format!("{k}-r"))
    .repartition("bench-rekeyed")
    .to(
        "bench-repartition-out",
        Produced::with(Serdes::string(), Serdes::bytes()),
    );
    b.build().unwrap()
}

/// Checks what a topology wrote: `records` outputs, or for an emit-final count, windows that
/// hold every record but those of the last, open window, each emitted once.
fn check(bootstrap: &str, topic: &str, records: usize, emit_final: bool) {
    let out = read_back(bootstrap, topic);
    if emit_final {
        let mut windows = std::collections::BTreeSet::new();
        let mut total = 0i64;
        for (k, v) in &out {
            assert!(windows.insert(k.clone()), "{topic}: a window emitted twice");
            total += i64::from_be_bytes(v[..8].try_into().unwrap());
        }
        // The last second of event time is still open (its records: up to 1 000).
        assert!(
            total <= records as i64 && total >= records as i64 - 1_000,
            "{topic}: closed windows hold {total} of {records} records"
        );
    } else {
        assert_eq!(out.len(), records, "{topic}: records out");
    }
}

fn windowed_count(out: &str) -> Topology {
    let b = StreamsBuilder::new();
    b.stream(
        &["bench-in"],
        Consumed::with(Serdes::string(), Serdes::bytes()),
    )
    .group_by_key(Grouped::default())
    .windowed_by(TimeWindows::of_size_and_grace(
        Duration::from_secs(60),
        Duration::from_secs(10),
    ))
    .count(Materialized::named("bench-counts"))
    .to_stream()
    .to(
        out,
        Produced::with(
            Serdes::windowed(Serdes::string()),
            Serdes::nullable(Serdes::i64()),
        ),
    );
    b.build().unwrap()
}

/// Changelog records for the restore figures.
const CHANGELOG_RECORDS: usize = 200_000;

/// Restores a count store from a changelog of `CHANGELOG_RECORDS` records (10 000 keys over 3
/// partitions): the full restore's records/s, then a restart on the same state directory — the
/// records it restored (its checkpoint covers everything) and how long from assignment until it
/// processed its first record.
fn restore(bootstrap: &str) -> (f64, u64, Duration) {
    let app = "bench-restore";
    let changelog = format!("{app}-restore-counts-changelog");
    let p = bulk_producer(bootstrap);
    for i in 0..CHANGELOG_RECORDS {
        let key = format!("k{}", i % 10_000);
        let value = (i as i64).to_be_bytes();
        while p
            .send(
                BaseRecord::to(&changelog)
                    .partition((i % 3) as i32)
                    .key(&key)
                    .payload(&value[..]),
            )
            .is_err()
        {
            p.poll(Duration::from_millis(1));
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let topology = || {
        let b = StreamsBuilder::new();
        b.stream(
            &["restore-in"],
            Consumed::with(Serdes::string(), Serdes::bytes()),
        )
        .group_by_key(Grouped::default())
        .count(Materialized::named("restore-counts"))
        .to_stream()
        .to(
            "restore-out",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
        b.build().unwrap()
    };
    let dir = std::env::temp_dir().join(format!("eddy-bench-{app}-{}", std::process::id()));
    let start = || {
        let mut streams = StreamsConfig::new(app);
        streams.state_dir = dir.clone();
        KafkaStreams::start(topology(), RuntimeConfig::new(streams, bootstrap)).unwrap()
    };
    let wait = |what: &dyn Fn() -> bool| {
        while !what() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Instant::now()
    };
    // Full restore: assignment (restores start in the rebalance callback) until all is read.
    let first = start();
    let progress = first.progress();
    let assigned = wait(&|| progress.assigned_partitions.load(Ordering::Relaxed) > 0);
    let restored = wait(&|| progress.restored.load(Ordering::Relaxed) >= CHANGELOG_RECORDS as u64);
    let full_rate = CHANGELOG_RECORDS as f64 / (restored - assigned).as_secs_f64();
    first.close().unwrap();
    // Restart on the checkpoint: only the tail (here nothing) is read.
    let second = start();
    let progress = second.progress();
    let assigned = wait(&|| progress.assigned_partitions.load(Ordering::Relaxed) >= 3);
    for partition in 0..3 {
        p.send(
            BaseRecord::to("restore-in")
                .partition(partition)
                .key("k1")
                .payload(&b"x"[..]),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let ready = wait(&|| progress.records_in.load(Ordering::Relaxed) > 0);
    let again = progress.restored.load(Ordering::Relaxed);
    second.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (full_rate, again, ready - assigned)
}

fn main() {
    // `cargo test --benches` runs bench binaries with no arguments besides `--bench`-less ones;
    // only measure when asked to bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    // `-- nexmark` runs only the Nexmark table.
    if std::env::args().any(|a| a == "nexmark") {
        print_nexmark(nexmark(&bootstrap, &broker));
        return;
    }
    broker.create_topic("bench-in", 3);
    broker.create_topic("bench-events", 3);
    broker.create_topic("bench-table", 3);
    for t in [
        "bench-out-pass-plain",
        "bench-out-pass-txn",
        "bench-stateless-out",
        "bench-count-eos",
        "bench-count-alos",
        "bench-final-alos",
        "bench-final-eos",
        "bench-update-alos",
        "bench-update-eos",
        "bench-join-out",
        "bench-repartition-out",
    ] {
        broker.create_topic(t, 3);
    }
    broker.create_topic("restore-in", 3);
    broker.create_topic("restore-out", 3);
    broker.create_topic_with_configs(
        "bench-restore-restore-counts-changelog",
        3,
        &[("cleanup.policy", "compact")],
    );
    // The table first: its rows are older than every stream record, so they join.
    fill_table(&bootstrap, "bench-table");
    fill(&bootstrap, "bench-in");
    fill_events(&bootstrap, "bench-events");
    let plain = passthrough(&bootstrap, false);
    let mut rows = vec![
        ("rdkafka passthrough, plain", plain),
        (
            "rdkafka passthrough, transactional (100 ms)",
            passthrough(&bootstrap, true),
        ),
    ];
    let stateless_rate = run_topology(
        &bootstrap,
        "bench-stateless",
        stateless(),
        "exactly_once_v2",
    );
    check(&bootstrap, "bench-stateless-out", RECORDS, false);
    rows.push((
        "stateless topology (filter, map_values), exactly_once_v2",
        stateless_rate,
    ));
    for (name, app, topic, guarantee) in [
        (
            "windowed count (60 s, emit on update), exactly_once_v2",
            "bench-count-eos",
            "bench-count-eos",
            "exactly_once_v2",
        ),
        (
            "windowed count (60 s, emit on update), at_least_once",
            "bench-count-alos",
            "bench-count-alos",
            "at_least_once",
        ),
    ] {
        rows.push((
            name,
            run_topology(&bootstrap, app, windowed_count(topic), guarantee),
        ));
    }
    for (name, app, topic, emit, guarantee) in [
        (
            "issue 10 count (1 s, 10 000 keys), emit on close, at_least_once",
            "bench-final-alos",
            "bench-final-alos",
            EmitStrategy::OnWindowClose,
            "at_least_once",
        ),
        (
            "issue 10 count (1 s, 10 000 keys), emit on update, at_least_once",
            "bench-update-alos",
            "bench-update-alos",
            EmitStrategy::OnWindowUpdate,
            "at_least_once",
        ),
        (
            "issue 10 count (1 s, 10 000 keys), emit on close, exactly_once_v2",
            "bench-final-eos",
            "bench-final-eos",
            EmitStrategy::OnWindowClose,
            "exactly_once_v2",
        ),
        (
            "issue 10 count (1 s, 10 000 keys), emit on update, exactly_once_v2",
            "bench-update-eos",
            "bench-update-eos",
            EmitStrategy::OnWindowUpdate,
            "exactly_once_v2",
        ),
    ] {
        let rate = run_topology(
            &bootstrap,
            app,
            issue_windowed_count(emit, topic),
            guarantee,
        );
        if emit == EmitStrategy::OnWindowClose {
            check(&bootstrap, topic, RECORDS, true);
        }
        rows.push((name, rate));
    }
    let join_rate = run_topology_reading(
        &bootstrap,
        "bench-join",
        stream_table_join(),
        "exactly_once_v2",
        RECORDS as u64 + 1_000,
    );
    check(&bootstrap, "bench-join-out", RECORDS, false);
    rows.push(("stream–table left join, exactly_once_v2", join_rate));
    // Each record is read twice: from `bench-in` and from the repartition topic.
    let repartition_rate = run_topology_reading(
        &bootstrap,
        "bench-repartition",
        repartition(),
        "exactly_once_v2",
        2 * RECORDS as u64,
    );
    check(&bootstrap, "bench-repartition-out", RECORDS, false);
    rows.push((
        "select_key → repartition → sink, exactly_once_v2",
        repartition_rate,
    ));
    println!("| {RECORDS} records of 100 bytes, 3 partitions | records/s | vs plain passthrough |");
    println!("|---|---|---|");
    for (name, rate) in rows {
        println!("| {name} | {:.0} | {:.2} |", rate, rate / plain);
    }
    println!();
    print_nexmark(nexmark(&bootstrap, &broker));
    let (full_rate, again, ready) = restore(&bootstrap);
    println!();
    println!("| restore of a count store, {CHANGELOG_RECORDS} changelog records, 3 partitions | |");
    println!("|---|---|");
    println!("| full restore (no local state) | {full_rate:.0} records/s |");
    println!("| restart on the checkpoint: records restored | {again} |");
    println!(
        "| restart on the checkpoint: assignment to first record processed | {} ms |",
        ready.as_millis()
    );
}
