//! A tumbling-window count through the test driver: the engine's per-record cost without Kafka.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, EmitStrategy, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsConfig,
    TimeWindows,
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

/// Records of the emit-on-close case: issue 10's workload (10 000 keys, event time 1 ms apart,
/// 1-second tumbling windows, no grace) through the driver on RocksDB.
const EMIT_FINAL_RECORDS: u64 = 20_000;

fn emit_final_driver() -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    b.stream(
        &["events"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .group_by_key(Grouped::default())
    .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(1)))
    .emit_strategy(EmitStrategy::OnWindowClose)
    .count(Materialized::named("final-counts"))
    .to_stream()
    .to(
        "final-counts",
        Produced::with(
            Serdes::windowed(Serdes::string()),
            Serdes::nullable(Serdes::i64()),
        ),
    );
    let d = TopologyTestDriver::new(b.build().unwrap(), StreamsConfig::new("bench")).unwrap();
    d.set_commit_every_record(false);
    d
}

/// Pipes the workload (a commit every 1 000 records) and checks the result: every window but
/// the last, still open, was emitted once with its whole count.
fn pipe_emit_final(d: TopologyTestDriver) {
    let input = d.input_topic("events", Serdes::string(), Serdes::string());
    let payload = "x".repeat(100);
    for i in 0..EMIT_FINAL_RECORDS {
        input
            .pipe(format!("user-{}", i % 10_000), payload.clone(), i as i64)
            .unwrap();
        if i % 1000 == 999 {
            d.commit().unwrap();
        }
    }
    d.commit().unwrap();
    let output = d.output_topic(
        "final-counts",
        Serdes::windowed(Serdes::string()),
        Serdes::nullable(Serdes::i64()),
    );
    let emitted: i64 = output.read_values().unwrap().into_iter().flatten().sum();
    let open = EMIT_FINAL_RECORDS as i64 % 1000;
    let open = if open == 0 { 1000 } else { open };
    assert_eq!(
        emitted,
        EMIT_FINAL_RECORDS as i64 - open,
        "closed windows' counts"
    );
}

fn windowed_count(c: &mut Criterion) {
    let mut emit_final = c.benchmark_group("windowed_count_emit_final");
    emit_final.throughput(Throughput::Elements(EMIT_FINAL_RECORDS));
    emit_final.sample_size(10);
    emit_final.bench_function("rocksdb_commit_every_1000", |b| {
        b.iter_batched(emit_final_driver, pipe_emit_final, BatchSize::PerIteration)
    });
    emit_final.finish();

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
