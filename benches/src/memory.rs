//! Peak memory of a windowed count over 1 000 000 distinct keys (1-hour tumbling windows, so
//! that every key stays in state), on a task with RocksDB and caching, a commit every 1 000
//! records. The count runs in a child process of the suite, so that its peak resident set
//! (`VmHWM`) is its own; the child checks that the last count of every key is 1.

use std::time::{Duration, Instant};

use eddy_engine::{
    Headers, InputRecord, StateMemory, StreamTask, StreamsConfig, TaskId, Topology, WallClock,
};

use crate::report::Row;

/// The argument that makes the suite binary run the child.
pub const CHILD_ARG: &str = "--memory-child";

fn topology() -> Topology {
    crate::hot_path::windowed_of(Duration::from_secs(3600))
}

/// The child: counts `records` distinct keys, checks the counts, prints
/// `<records/s> <peak RSS bytes>`.
pub fn child(records: u64) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = StreamsConfig::new("bench-memory");
    config.state_dir = dir.path().to_path_buf();
    let topology = topology();
    let id = TaskId {
        subtopology: 0,
        partition: 0,
    };
    let memory = StateMemory::from_config(&config);
    let mut task = StreamTask::new_in(&topology, id, &config, WallClock::manual(0), true, &memory)
        .map_err(|e| e.to_string())?;
    let mut emitted = 0u64;
    let mut wrong = 0u64;
    let no_offsets = Default::default();
    let started = Instant::now();
    let mut commit = |task: &mut StreamTask| -> Result<(), String> {
        task.flush().map_err(|e| e.to_string())?;
        for r in task.take_produced() {
            emitted += 1;
            if r.value.as_deref() != Some(&1i64.to_be_bytes()[..]) {
                wrong += 1;
            }
        }
        task.take_changelog();
        task.commit_state(&no_offsets).map_err(|e| e.to_string())
    };
    for i in 0..records {
        task.process(InputRecord {
            topic: "in".into(),
            partition: 0,
            offset: i as i64,
            key: Some(format!("user-{i:09}").into_bytes()),
            value: Some(vec![b'v'; 100]),
            timestamp: i as i64,
            headers: Headers::new(),
        })
        .map_err(|e| e.to_string())?;
        if (i + 1).is_multiple_of(1_000) || task.needs_commit() {
            commit(&mut task)?;
        }
    }
    commit(&mut task)?;
    let elapsed = started.elapsed();
    if emitted != records || wrong != 0 {
        return Err(format!(
            "{emitted} counts out for {records} keys, {wrong} of them not 1"
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmHWM in /proc/self/status")?;
    println!(
        "{} {}",
        records as f64 / elapsed.as_secs_f64(),
        peak_kb * 1024
    );
    Ok(())
}

/// Runs the child and reports its rate and peak resident set.
pub fn run(records: u64) -> Result<Row, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .arg(CHILD_ARG)
        .arg(records.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "the memory child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let rate: f64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("no rate from the child")?;
    let peak: u64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("no peak from the child")?;
    let elapsed = Duration::from_secs_f64(records as f64 / rate);
    Ok(Row::new(
        "memory",
        "count of 1 000 000 distinct keys in 1 h windows, RocksDB + cache, on a task",
        records,
        elapsed,
    )
    .noted(format!(
        "peak RSS {} MiB (block cache 64 MiB, write buffers 32 MiB, cache 10 MiB, uncommitted 64 MiB)",
        peak >> 20
    )))
}
