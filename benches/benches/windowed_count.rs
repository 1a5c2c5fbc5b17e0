//! A tumbling-window count through the test driver: the engine's per-record cost without Kafka.
//! (Issue 10's emit-on-close workload is in the suite: `cargo bench --bench suite -- windows`.)

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsConfig, TimeWindows,
};

const RECORDS: u64 = 5_000;

fn driver(persistent: bool) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    b.stream(
        &["events"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .group_by_key(Grouped::default())
    .windowed_by(TimeWindows::of_size_and_grace(
        Duration::from_secs(60),
        Duration::from_secs(10),
    ))
    .count(Materialized::named("counts"))
    .to_stream()
    .to(
        "counts",
        Produced::with(
            Serdes::windowed(Serdes::string()),
            Serdes::nullable(Serdes::i64()),
        ),
    );
    let topology = b.build().unwrap();
    let config = StreamsConfig::new("bench");
    if persistent {
        TopologyTestDriver::new(topology, config).unwrap()
    } else {
        TopologyTestDriver::in_memory(topology, config).unwrap()
    }
}

fn pipe_all(d: TopologyTestDriver) {
    let input = d.input_topic("events", Serdes::string(), Serdes::string());
    let payload = "x".repeat(100);
    for i in 0..RECORDS {
        input
            .pipe(
                format!("user-{}", i % 500),
                payload.clone(),
                (i * 100) as i64,
            )
            .unwrap();
    }
}

fn windowed_count(c: &mut Criterion) {
    let mut group = c.benchmark_group("windowed_count");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.bench_function("rocksdb_commit_every_record", |b| {
        b.iter_batched(|| driver(true), pipe_all, BatchSize::PerIteration)
    });
    group.bench_function("rocksdb_commit_every_1000", |b| {
        b.iter_batched(
            || {
                let d = driver(true);
                d.set_commit_every_record(false);
                d
            },
            |d| {
                let input = d.input_topic("events", Serdes::string(), Serdes::string());
                let payload = "x".repeat(100);
                for i in 0..RECORDS {
                    input
                        .pipe(
                            format!("user-{}", i % 500),
                            payload.clone(),
                            (i * 100) as i64,
                        )
                        .unwrap();
                    if i % 1000 == 999 {
                        d.commit().unwrap();
                    }
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("memory_commit_every_record", |b| {
        b.iter_batched(|| driver(false), pipe_all, BatchSize::PerIteration)
    });
    group.finish();
}

criterion_group!(benches, windowed_count);
criterion_main!(benches);
