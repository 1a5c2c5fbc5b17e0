//! Issue 10's windowed-count workload through the test driver: JSON records of ~100 bytes,
//! 10 000 keys, event time 1 ms apart, a keyed count in 1-second tumbling windows with no grace,
//! on RocksDB with caching and a commit every 1 000 records, emitted on close or on every update.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, EmitStrategy, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsConfig,
    TimeWindows, Topology,
};

use crate::report::Row;

/// Keys of the workload.
pub const KEYS: u64 = 10_000;
/// Records between two commits.
pub const COMMIT_EVERY: u64 = 1_000;

/// The windowed count, emitting on close or on update.
pub fn windowed_count(emit: EmitStrategy, input: &str, output: &str) -> Topology {
    let b = StreamsBuilder::new();
    b.stream(&[input], Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(1)))
        .emit_strategy(emit)
        .count(Materialized::named("window-counts"))
        .to_stream()
        .to(
            output,
            Produced::with(
                Serdes::windowed(Serdes::string()),
                Serdes::nullable(Serdes::i64()),
            ),
        );
    b.build().expect("the windowed count builds")
}

/// The `i`-th record: its key and a ~100-byte JSON value.
pub fn record(i: u64) -> (Vec<u8>, Vec<u8>) {
    let key = format!("user-{}", i % KEYS);
    let value = format!(
        r#"{{"user":"{key}","event":"quiz_answered","seq":{i:>10},"score":{:>3},"pad":"xxxxxxxxxx"}}"#,
        i % 101
    );
    (key.into_bytes(), value.into_bytes())
}

/// Runs `records` records through the driver and checks the counts: emit-on-close must have
/// emitted every closed window once with its whole count; emit-on-update's last value of each
/// window must be its count.
pub fn run(records: u64, emit: EmitStrategy) -> Result<Row, String> {
    let d = TopologyTestDriver::new(
        windowed_count(emit, "events", "counts"),
        StreamsConfig::new("bench"),
    )
    .map_err(|e| e.to_string())?;
    d.set_commit_every_record(false);
    let inputs: Vec<_> = (0..records).map(record).collect();
    let started = Instant::now();
    for (i, (k, v)) in inputs.into_iter().enumerate() {
        d.pipe_raw("events", Some(k), Some(v), i as i64, Default::default())
            .map_err(|e| e.to_string())?;
        if (i as u64 + 1).is_multiple_of(COMMIT_EVERY) {
            d.commit().map_err(|e| e.to_string())?;
        }
    }
    d.commit().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let output = d.output_topic(
        "counts",
        Serdes::windowed(Serdes::string()),
        Serdes::nullable(Serdes::i64()),
    );
    let out = output.read_key_values().map_err(|e| e.to_string())?;
    let name = match emit {
        EmitStrategy::OnWindowClose => "emit on close",
        EmitStrategy::OnWindowUpdate => "emit on update",
    };
    match emit {
        EmitStrategy::OnWindowClose => {
            let mut seen = std::collections::BTreeSet::new();
            for (w, _) in &out {
                if !seen.insert((w.key.clone(), w.start)) {
                    return Err(format!("window {w:?} emitted twice"));
                }
            }
            let emitted: i64 = out.iter().filter_map(|(_, v)| *v).sum();
            let open = match records % 1_000 {
                0 => 1_000,
                n => n,
            };
            let closed = records as i64 - open as i64;
            if emitted != closed {
                return Err(format!(
                    "closed windows counted {emitted}, expected {closed}"
                ));
            }
        }
        EmitStrategy::OnWindowUpdate => {
            let mut last = BTreeMap::new();
            for (w, v) in out {
                last.insert((w.key, w.start), v.unwrap_or(0));
            }
            let total: i64 = last.values().sum();
            if total != records as i64 {
                return Err(format!("windows counted {total}, expected {records}"));
            }
        }
    }
    Ok(Row::new(
        "windows (driver)",
        format!("count, 1 s tumbling, {name}"),
        records,
        elapsed,
    ))
}
