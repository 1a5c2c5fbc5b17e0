//! Shared helpers of Eddy's benchmarks: deterministic keys and records, and the workloads of
//! the benchmark suite (`cargo bench -p eddy-benches --bench suite`), each of which checks its
//! result before its time counts.

pub mod active_users;
pub mod broker;
pub mod failover;
pub mod hot_path;
pub mod memory;
pub mod nexmark;
pub mod on_broker;
pub mod queries;
pub mod read_back;
pub mod report;
pub mod windows;

/// The `i`-th of `n` keys, spread so that consecutive records hit different keys.
pub fn key(i: u64, n: u64) -> Vec<u8> {
    format!("key-{:08}", (i.wrapping_mul(2_654_435_761)) % n.max(1)).into_bytes()
}

/// A value of `len` bytes.
pub fn value(len: usize) -> Vec<u8> {
    vec![b'v'; len]
}
