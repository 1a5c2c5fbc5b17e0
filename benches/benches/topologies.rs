//! Each platform topology through the test driver on RocksDB, fed the shared generator's mix
//! (only the topics it reads), committing every 100 records: records/s per topology.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, StreamsConfig};
use eddy_topologies::generator::{GeneratedRecord, Generator, GeneratorConfig};

fn topologies(c: &mut Criterion) {
    let records: Vec<GeneratedRecord> = Generator::new(GeneratorConfig {
        count: 20_000,
        ..Default::default()
    })
    .collect();
    let mut group = c.benchmark_group("topology");
    group.sample_size(10);
    for entry in eddy_topologies::registry()
        .into_iter()
        .filter(|e| !e.name.ends_with("word-count"))
    {
        let topology = (entry.build)().unwrap();
        let inputs = topology.source_topics();
        let mine: Vec<GeneratedRecord> = records
            .iter()
            .filter(|r| inputs.iter().any(|t| t == r.topic))
            .cloned()
            .collect();
        group.throughput(Throughput::Elements(mine.len() as u64));
        group.bench_function(entry.name, |b| {
            b.iter_batched(
                || {
                    let d = TopologyTestDriver::new(
                        (entry.build)().unwrap(),
                        StreamsConfig::new(entry.name),
                    )
                    .unwrap();
                    d.set_commit_every_record(false);
                    d
                },
                |d| {
                    for (i, r) in mine.iter().enumerate() {
                        d.pipe_raw(
                            r.topic,
                            Some(r.key.clone().into_bytes()),
                            Some(r.value.clone()),
                            r.timestamp_ms,
                            Headers::new(),
                        )
                        .unwrap();
                        if i % 100 == 99 {
                            d.commit().unwrap();
                        }
                    }
                    d.commit().unwrap();
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, topologies);
criterion_main!(benches);
