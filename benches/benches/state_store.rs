//! RocksDB (and, for scale, in-memory) key-value store: put, get and range scan, 100-byte values.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eddy_benches::{key, value};
use eddy_state::{
    InMemoryKeyValueStore, KeyValueStore, RocksDbEnv, RocksDbInstance, RocksDbMemoryConfig,
};
use std::ops::Bound;

const N: u64 = 10_000;

fn filled(store: &mut dyn KeyValueStore) {
    let v = value(100);
    for i in 0..N {
        store.put(&key(i, N), &v).unwrap();
    }
}

fn stores(c: &mut Criterion) {
    let env = RocksDbEnv::new(RocksDbMemoryConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDbInstance::open(&env, dir.path()).unwrap();
    let mut group = c.benchmark_group("kv_store");
    group.throughput(Throughput::Elements(N));
    group.sample_size(20);

    let mut rocks = db.key_value_store("bench").unwrap();
    group.bench_function("rocksdb_put_10k", |b| b.iter(|| filled(&mut rocks)));
    group.bench_function("rocksdb_get_10k", |b| {
        b.iter(|| {
            for i in 0..N {
                std::hint::black_box(rocks.get(&key(i, N)).unwrap());
            }
        })
    });
    group.bench_function("rocksdb_range_scan_10k", |b| {
        b.iter(|| {
            rocks
                .range(Bound::Unbounded, Bound::Unbounded)
                .unwrap()
                .count()
        })
    });
    group.bench_function("memory_put_10k", |b| {
        b.iter_batched(
            || InMemoryKeyValueStore::new("m"),
            |mut m| filled(&mut m),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, stores);
criterion_main!(benches);
