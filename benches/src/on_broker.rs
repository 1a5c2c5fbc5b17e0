//! Benchmarks on a running broker: a bulk producer that partitions as Java clients do, a run of
//! a topology to the end of its input, and Nexmark's queries on the broker.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig, StreamsConfig, Topology};
use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::read_back::read_back;

/// A producer for filling topics fast (batches of 5 ms, a deep queue), partitioning keys as
/// Java clients and Eddy's own sinks do, so that its topics are co-partitioned with Eddy's
/// repartition topics (librdkafka's default partitioner is a different hash).
pub fn bulk_producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

/// Runs `topology` (application id `app`) until its committed offsets have reached the end of
/// every source partition, it has no lag left on any input (repartition topics included) and it
/// has processed nothing more for 1.5 s; returns `fed` per second from its first record to the
/// commit that took in the last source record.
pub fn run_until_quiet(bootstrap: &str, app: &str, topology: Topology, fed: u64) -> f64 {
    let dir = std::env::temp_dir().join(format!("eddy-bench-{app}-{}", std::process::id()));
    let mut streams = StreamsConfig::new(app);
    streams.state_dir = dir.clone();
    // A task that joins two partitions waits up to 100 ms more for one that ran empty and is
    // caught up with the broker, as Kafka Streams users set for joins whose inputs are
    // produced side by side (records still at the broker are waited for anyway).
    streams.set("max.task.idle.ms", "100").unwrap();
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", app)
        .create()
        .unwrap();
    let mut ends = TopicPartitionList::new();
    for topic in topology.source_topics() {
        for p in 0..3 {
            let (_, high) = watcher
                .fetch_watermarks(&topic, p, Duration::from_secs(10))
                .unwrap();
            ends.add_partition_offset(&topic, p, Offset::Offset(high))
                .unwrap();
        }
    }
    let streams_app =
        KafkaStreams::start(topology, RuntimeConfig::new(streams, bootstrap)).unwrap();
    let progress = streams_app.progress();
    while progress.records_in.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let mut sources_done: Option<Instant> = None;
    let (mut seen, mut last_change) = (0, Instant::now());
    loop {
        let now = progress.records_in.load(Ordering::Relaxed);
        if now != seen {
            (seen, last_change) = (now, Instant::now());
        }
        if sources_done.is_none() {
            let committed = watcher
                .committed_offsets(ends.clone(), Duration::from_secs(10))
                .unwrap();
            let done = ends.elements().iter().all(|end| {
                committed
                    .find_partition(end.topic(), end.partition())
                    .and_then(|c| c.offset().to_raw())
                    .zip(end.offset().to_raw())
                    .is_some_and(|(c, e)| c >= e)
            });
            if done {
                sources_done = Some(Instant::now());
            }
        }
        if sources_done.is_some()
            && progress.lag.load(Ordering::Relaxed) == 0
            && last_change.elapsed() > Duration::from_millis(1_500)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished = sources_done.unwrap_or(last_change);
    let rate = fed as f64 / (finished - started).as_secs_f64();
    streams_app.close().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    rate
}

/// Nexmark's queries on the broker, exactly-once, each output read back and checked.
pub fn nexmark(bootstrap: &str, broker: &EmbeddedBroker) -> Vec<(String, f64)> {
    use crate::nexmark;
    let events = nexmark::generate(1_000_000);
    for topic in ["person", "auction", "bid"] {
        broker.create_topic(topic, 3);
    }
    let p = bulk_producer(bootstrap);
    for (topic, key, value, ts) in &events.encoded {
        while p
            .send(BaseRecord::to(topic).key(key).payload(value).timestamp(*ts))
            .is_err()
        {
            p.poll(Duration::from_millis(1));
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
    let mut rows = Vec::new();
    let only = std::env::var("EDDY_NEXMARK_ONLY").ok();
    for (name, topic) in nexmark::QUERIES {
        if only.as_deref().is_some_and(|o| o != *topic) {
            continue;
        }
        broker.create_topic(topic, 3);
        let topology = nexmark::topology(topic);
        let inputs = topology.source_topics();
        let fed = events
            .encoded
            .iter()
            .filter(|(t, ..)| inputs.iter().any(|i| i == t))
            .count() as u64;
        let rate = run_until_quiet(bootstrap, &format!("bench-nexmark-{topic}"), topology, fed);
        let out: nexmark::Output = read_back(bootstrap, topic)
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        // A wrong result is reported in its row and fails the run at the end, after the table.
        let name = match nexmark::check(topic, &events, &out, nexmark::Arrival::Timestamps) {
            Ok(()) => format!("nexmark {name}, exactly_once_v2"),
            Err(e) => {
                eprintln!("{e}");
                let short: String = e.chars().take(160).collect();
                format!("nexmark {name}, exactly_once_v2 — WRONG RESULT: {short}")
            }
        };
        rows.push((name, rate));
    }
    rows
}

/// Prints the Nexmark table; exits with 1 after it when a query gave a wrong result.
pub fn print_nexmark(rows: Vec<(String, f64)>) {
    let q1 = rows
        .iter()
        .find(|(n, _)| n.contains("q1"))
        .map_or(1.0, |(_, r)| *r);
    println!("| Nexmark, 1 000 000 events, 3 partitions | input records/s | vs q1 |");
    println!("|---|---|---|");
    let wrong = rows
        .iter()
        .filter(|(n, _)| n.contains("WRONG RESULT"))
        .count();
    for (name, rate) in rows {
        println!("| {name} | {rate:.0} | {:.2} |", rate / q1);
    }
    println!();
    if wrong > 0 {
        eprintln!("{wrong} Nexmark queries gave a wrong result");
        std::process::exit(1);
    }
}
