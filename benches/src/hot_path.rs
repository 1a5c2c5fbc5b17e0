//! The per-record path without a broker or the test driver: encoded records fed straight to a
//! [`StreamTask`], a commit (flush, hand-off of outputs and changelog, state commit) every
//! 1 000 records, as the runtime's stream thread does between polls. The same workloads through
//! the test driver give the driver's own overhead by difference.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, Grouped, Headers, InputRecord, Materialized, Produced, Serdes, StreamTask,
    StreamsBuilder, StreamsConfig, TaskId, TimeWindows, Topology, WallClock,
};

use crate::report::Row;

/// Records between two commits.
const COMMIT_EVERY: usize = 1_000;
/// Keys of the windowed count.
const KEYS: u64 = 10_000;

/// A filter and a map of 100-byte values (Kafka Streams' SimpleBenchmark's shape).
pub fn stateless() -> Topology {
    let b = StreamsBuilder::new();
    b.stream(&["in"], Consumed::with(Serdes::string(), Serdes::bytes()))
        .filter(|_, v| v.first() != Some(&b'#'))
        .map_values(|mut v: Vec<u8>| {
            v[0] = b'Y';
            v
        })
        .to("out", Produced::with(Serdes::string(), Serdes::bytes()));
    b.build().expect("the stateless topology builds")
}

/// A count per key in 1-second tumbling windows, on RocksDB with caching, emitted on update.
pub fn windowed() -> Topology {
    windowed_of(Duration::from_secs(1))
}

/// A count per key of `in` in tumbling windows of `size`, on RocksDB with caching, emitted on
/// update to `out`.
pub fn windowed_of(size: Duration) -> Topology {
    let b = StreamsBuilder::new();
    b.stream(&["in"], Consumed::with(Serdes::string(), Serdes::bytes()))
        .group_by_key(Grouped::default())
        .windowed_by(TimeWindows::of_size_with_no_grace(size))
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            "out",
            Produced::with(
                Serdes::windowed(Serdes::string()),
                Serdes::nullable(Serdes::i64()),
            ),
        );
    b.build().expect("the windowed count builds")
}

fn inputs(records: u64) -> Vec<InputRecord> {
    (0..records)
        .map(|i| {
            let mut value = vec![b'v'; 100];
            if i % 10 == 0 {
                value[0] = b'#';
            }
            InputRecord {
                topic: "in".into(),
                partition: 0,
                offset: i as i64,
                key: Some(format!("user-{}", i % KEYS).into_bytes()),
                value: Some(value),
                timestamp: i as i64,
                headers: Headers::new(),
            }
        })
        .collect()
}

/// What came out, kept as handed over (a move per record); read after the clock stops.
#[derive(Default)]
struct Outputs {
    records: Vec<eddy_engine::ProducedRecord>,
}

impl Outputs {
    fn take(&mut self, task: &mut StreamTask) {
        self.records.append(&mut task.take_produced());
        // The runtime hands the changelog to its producer; here it is dropped.
        task.take_changelog();
    }

    /// The last value of each key.
    fn last(&self) -> BTreeMap<&[u8], Option<&[u8]>> {
        self.records
            .iter()
            .filter_map(|r| Some((r.key.as_deref()?, r.value.as_deref())))
            .collect()
    }
}

fn run_task(topology: &Topology, records: u64) -> Result<(Outputs, Duration), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = StreamsConfig::new("bench-hot-path");
    config.state_dir = dir.path().to_path_buf();
    let id = TaskId {
        subtopology: 0,
        partition: 0,
    };
    let mut task = StreamTask::new(topology, id, &config, WallClock::manual(0), true)
        .map_err(|e| e.to_string())?;
    let inputs = inputs(records);
    let mut out = Outputs::default();
    let no_offsets = BTreeMap::new();
    let started = Instant::now();
    for (i, input) in inputs.into_iter().enumerate() {
        task.process(input).map_err(|e| e.to_string())?;
        if (i + 1).is_multiple_of(COMMIT_EVERY) {
            task.flush().map_err(|e| e.to_string())?;
            out.take(&mut task);
            task.commit_state(&no_offsets).map_err(|e| e.to_string())?;
        }
    }
    task.flush().map_err(|e| e.to_string())?;
    out.take(&mut task);
    task.commit_state(&no_offsets).map_err(|e| e.to_string())?;
    Ok((out, started.elapsed()))
}

fn run_driver(topology: Topology, records: u64) -> Result<(u64, Duration), String> {
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("bench-hot-path-driver"))
        .map_err(|e| e.to_string())?;
    d.set_commit_every_record(false);
    let inputs = inputs(records);
    let started = Instant::now();
    for (i, r) in inputs.into_iter().enumerate() {
        d.pipe_raw("in", r.key, r.value, r.timestamp, r.headers)
            .map_err(|e| e.to_string())?;
        if (i + 1).is_multiple_of(COMMIT_EVERY) {
            d.commit().map_err(|e| e.to_string())?;
        }
    }
    d.commit().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    Ok((d.topic_records("out").len() as u64, elapsed))
}

/// Rows of the stateless topology: on a task, and (with `driver`) through the test driver.
/// Checks that exactly the 9 in 10 records that pass the filter came out.
pub fn run_stateless(records: u64, driver: bool) -> Result<Vec<Row>, String> {
    let expected = records - records.div_ceil(10);
    let name = "filter → map_values → sink";
    let mut rows = Vec::new();
    if !driver {
        let (out, time) = run_task(&stateless(), records)?;
        if out.records.len() as u64 != expected {
            return Err(format!(
                "stateless: {} out, expected {expected}",
                out.records.len()
            ));
        }
        rows.push(
            Row::new(
                "per-record path",
                format!("{name}, on a task"),
                records,
                time,
            )
            .noted("target ≥ 1 000 000/s"),
        );
    } else {
        let (out, time) = run_driver(stateless(), records)?;
        if out != expected {
            return Err(format!(
                "stateless (driver): {out} out, expected {expected}"
            ));
        }
        rows.push(Row::new(
            "per-record path",
            format!("{name}, through the driver"),
            records,
            time,
        ));
    }
    Ok(rows)
}

/// Rows of the windowed count: on a task (checking that the last count of every window adds up
/// to the records), or through the test driver.
pub fn run_windowed(records: u64, driver: bool) -> Result<Vec<Row>, String> {
    let name = "count, 1 s tumbling, RocksDB + cache";
    if driver {
        let (_, time) = run_driver(windowed(), records)?;
        return Ok(vec![Row::new(
            "per-record path",
            format!("{name}, through the driver"),
            records,
            time,
        )]);
    }
    let (out, time) = run_task(&windowed(), records)?;
    let i64_of = |v: &Option<&[u8]>| {
        v.and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_be_bytes)
            .unwrap_or(0)
    };
    let total: i64 = out.last().values().map(i64_of).sum();
    if total != records as i64 {
        return Err(format!(
            "windowed count: windows add up to {total}, expected {records}"
        ));
    }
    Ok(vec![Row::new(
        "per-record path",
        format!("{name}, on a task"),
        records,
        time,
    )
    .noted("target ≥ 500 000/s")])
}
