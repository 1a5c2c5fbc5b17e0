//! Fail-over with and without standby replicas: two worker processes count 1 000 000 distinct
//! keys (a persistent store, exactly-once); once both are quiet one is SIGKILLed, and the time is
//! taken from the kill until its tasks process again on the other (probe records to every
//! partition, all counted). Each probe's key was counted before, so its new count (2) shows the
//! moved state arrived whole; the survivor's restore counter says how much it read for it.
//!
//! The workers are child processes of the suite (a SIGKILL must kill a whole process), each an
//! application instance that prints its counters on stdout for the parent to follow.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, RuntimeConfig, Serdes, StreamsBuilder,
    StreamsConfig, Topology,
};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};

use crate::report::Row;

/// The argument that makes the suite binary run a worker: `<arg> <bootstrap> <state dir>
/// <standbys>`.
pub const CHILD_ARG: &str = "--failover-worker";

const APP: &str = "bench-failover";
const INPUT: &str = "failover-keys";
const OUTPUT: &str = "failover-counts";
const PARTITIONS: i32 = 2;
/// Probe keys sent after the kill: counted before, so each must come out as 2.
const PROBES: usize = 32;

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream(&[INPUT], Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default().with(Serdes::string(), Serdes::string()))
        .count(Materialized::named("failover-store"))
        .to_stream()
        .to(
            OUTPUT,
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    b.build().expect("the fail-over topology builds")
}

/// The child: one instance until it is killed, its counters on stdout every 100 ms as
/// `progress <records in> <restored> <standby records> <restoring tasks>`.
pub fn child(args: &[String]) -> Result<(), String> {
    let [bootstrap, state_dir, standbys] = args else {
        return Err(format!("{CHILD_ARG} <bootstrap> <state dir> <standbys>"));
    };
    let mut config = StreamsConfig::new(APP);
    let set =
        |c: &mut StreamsConfig, k: &str, v: &str| c.set(k, v).map(drop).map_err(|e| e.to_string());
    set(&mut config, "state.dir", state_dir)?;
    set(&mut config, "num.standby.replicas", standbys)?;
    // A dead member is noticed after its session timeout: 2 s here instead of 10.
    set(&mut config, "main.consumer.session.timeout.ms", "2000")?;
    let app = KafkaStreams::start(topology(), RuntimeConfig::new(config, bootstrap))
        .map_err(|e| e.to_string())?;
    loop {
        let p = app.progress();
        println!(
            "progress {} {} {} {}",
            p.records_in.load(Relaxed),
            p.restored.load(Relaxed),
            p.standby_records.load(Relaxed),
            app.restoring_tasks()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A worker process and the last counters it printed.
struct Worker {
    child: Child,
    last: Arc<Mutex<[u64; 4]>>,
}

impl Worker {
    fn start(bootstrap: &str, dir: &std::path::Path, standbys: usize) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg(CHILD_ARG)
            .arg(bootstrap)
            .arg(dir)
            .arg(standbys.to_string())
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let last = Arc::new(Mutex::new([0u64; 4]));
        let seen = Arc::clone(&last);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let figures: Vec<u64> = line
                    .strip_prefix("progress ")
                    .map(|rest| rest.split(' ').filter_map(|n| n.parse().ok()).collect())
                    .unwrap_or_default();
                if let Ok(figures) = <[u64; 4]>::try_from(figures) {
                    *seen.lock().unwrap() = figures;
                }
            }
        });
        Ok(Self { child, last })
    }

    fn figures(&self) -> [u64; 4] {
        *self.last.lock().unwrap()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn key(i: u64) -> String {
    format!("key-{i:08}")
}

/// Waits until `done` holds, or fails after `limit` naming `what`.
fn wait(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let until = Instant::now() + limit;
    while !done() {
        if Instant::now() > until {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// One fail-over of `keys` keys with `standbys` standby replicas: the time from the SIGKILL to
/// every probe counted, and the records the survivor restored for it.
fn fail_over(keys: u64, standbys: usize) -> Result<(Duration, u64, u64), String> {
    let broker = EmbeddedBroker::start().map_err(|e| e.to_string())?;
    let bootstrap = broker.bootstrap();
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let victim = Worker::start(&bootstrap, &dir.path().join("victim"), standbys)?;
    let survivor = Worker::start(&bootstrap, &dir.path().join("survivor"), standbys)?;
    let producer = crate::on_broker::bulk_producer(&bootstrap);
    for i in 0..keys {
        let k = key(i);
        while producer
            .send(BaseRecord::<str, str>::to(INPUT).key(&k).payload("x"))
            .is_err()
        {
            producer.poll(Duration::from_millis(5));
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    // Both have counted everything once their records in add up and stop moving.
    wait(Duration::from_secs(600), "the first count", || {
        victim.figures()[0] + survivor.figures()[0] >= keys
    })?;
    let settled = |w: &Worker, column: usize| -> Result<(), String> {
        let mut before = w.figures()[column];
        let mut since = Instant::now();
        wait(Duration::from_secs(300), "quiet workers", || {
            let now = w.figures()[column];
            if now != before {
                (before, since) = (now, Instant::now());
            }
            since.elapsed() > Duration::from_secs(2)
        })
    };
    settled(&victim, 0)?;
    settled(&survivor, 0)?;
    settled(&survivor, 2)?;
    if victim.figures()[0] == 0 {
        return Err("the worker to be killed owned no task".into());
    }
    if standbys > 0 && survivor.figures()[2] == 0 {
        return Err("the survivor kept no standby".into());
    }
    let restored_before = survivor.figures()[1];
    let probes = consumer_from_beginning(&bootstrap, "probe-reader", "read_committed", |t| {
        t == OUTPUT
    });
    // Drain the first counts, so that only the probes' follow.
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(2) {
        if probes.poll(Duration::from_millis(50)).is_some() {
            idle = Instant::now();
        }
    }
    let mut victim = victim;
    let killed = Instant::now();
    victim.child.kill().map_err(|e| e.to_string())?;
    let _ = victim.child.wait();
    let wanted: BTreeMap<String, i64> = (0..PROBES as u64)
        .map(|i| (key(i * (keys / PROBES as u64)), 2))
        .collect();
    for k in wanted.keys() {
        producer
            .send(BaseRecord::<str, str>::to(INPUT).key(k).payload("x"))
            .map_err(|(e, _)| e.to_string())?;
    }
    producer
        .flush(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut counted: BTreeMap<String, i64> = BTreeMap::new();
    let deadline = killed + Duration::from_secs(300);
    while counted != wanted {
        if Instant::now() > deadline {
            return Err(format!(
                "probes counted {} of {PROBES} after the kill",
                counted.len()
            ));
        }
        if let Some(Ok(m)) = probes.poll(Duration::from_millis(5)) {
            let k = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let count = m
                .payload()
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
                .unwrap_or(-1);
            if !wanted.contains_key(&k) || count != 2 {
                return Err(format!("probe {k} counted {count}, not 2: state was lost"));
            }
            counted.insert(k, count);
        }
    }
    let took = killed.elapsed();
    // The counter is printed every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let [_, restored_after, standby_records, _] = survivor.figures();
    Ok((took, restored_after - restored_before, standby_records))
}

/// Both fail-overs, as rows of the suite: "records" are the keys in the store.
pub fn run(keys: u64) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for standbys in [0, 1] {
        let (took, restored, standby) = fail_over(keys, standbys)?;
        let label = if standbys == 0 {
            "without standbys".to_string()
        } else {
            format!("with {standbys} standby")
        };
        eprintln!(
            "failover {label}: {:.2} s from SIGKILL to processing, {restored} records restored, standby wrote {standby}",
            took.as_secs_f64()
        );
        rows.push(
            Row::new(
                "failover",
                format!("SIGKILL to processing elsewhere, {label}"),
                keys,
                took,
            )
            .noted(format!(
                "{:.2} s; {} records restored",
                took.as_secs_f64(),
                crate::report::grouped(restored)
            )),
        );
    }
    Ok(rows)
}
