//! SQL over live state, on the embedded broker with two workers sharing three partitions:
//! point-lookup latency (p50/p99) over HTTP and Postgres, local and routed to the other worker,
//! while the application processes; full-scan rows per second; and how much processing slows
//! while queries run. Every answer is checked against the counts fed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use eddy_engine::{
    Consumed, Grouped, KafkaStreams, Materialized, RuntimeConfig, Serdes, StateQueries,
    StreamsBuilder, StreamsConfig, Topology,
};
use eddy_testkit::{free_port, EmbeddedBroker};
use rdkafka::producer::{BaseRecord, Producer};

use crate::on_broker::bulk_producer;
use crate::report::Row;

fn topology(topic: &str) -> Topology {
    let b = StreamsBuilder::new();
    b.stream(&[topic], Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::named("by-key").with(Serdes::string(), Serdes::string()))
        .count(Materialized::named(format!("{topic}-counts").as_str()));
    b.build().unwrap()
}

fn key(i: u64, keys: u64) -> String {
    format!("key-{:07}", (i * 7919) % keys)
}

/// Feeds `n` records over `keys` keys (from record `from`); the count per key.
fn feed(bootstrap: &str, topic: &str, from: u64, n: u64, keys: u64) -> BTreeMap<String, i64> {
    let p = bulk_producer(bootstrap);
    let mut counts = BTreeMap::new();
    for i in from..from + n {
        let k = key(i, keys);
        while p
            .send(
                BaseRecord::to(topic)
                    .key(&k)
                    .payload("x")
                    .timestamp(1_000_000 + i as i64),
            )
            .is_err()
        {
            p.poll(Duration::from_millis(1));
        }
        *counts.entry(k).or_insert(0) += 1;
    }
    p.flush(Duration::from_secs(120)).unwrap();
    counts
}

fn start(bootstrap: &str, app: &str, topic: &str, server: Option<&str>) -> KafkaStreams {
    let mut c = StreamsConfig::new(app);
    c.state_dir = std::env::temp_dir().join(format!(
        "eddy-bench-{app}-{}-{}",
        std::process::id(),
        server.unwrap_or("solo")
    ));
    if let Some(server) = server {
        c.set("application.server", server).unwrap();
    }
    KafkaStreams::start(topology(topic), RuntimeConfig::new(c, bootstrap)).unwrap()
}

fn counted(q: &StateQueries, table: &str) -> Option<i64> {
    let answer = q
        .sql(&format!("SELECT sum(value) AS n FROM \"{table}\""))
        .ok()?;
    let rows: serde_json::Value = serde_json::from_str(&answer.to_json().ok()?).ok()?;
    rows[0]["n"].as_i64()
}

fn wait_counted(q: &StateQueries, table: &str, n: i64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while counted(q, table) != Some(n) {
        if Instant::now() > deadline {
            return Err(format!(
                "{table} never counted {n} records: {:?}",
                counted(q, table)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// p50 and p99 of `lookups` as a row note.
fn latency_row(workload: String, mut lookups: Vec<Duration>) -> Row {
    lookups.sort();
    let total: Duration = lookups.iter().sum();
    let (p50, p99) = (percentile(&lookups, 0.5), percentile(&lookups, 0.99));
    Row::new("queries", workload, lookups.len() as u64, total).noted(format!(
        "p50 {:.2} ms, p99 {:.2} ms (target p99 < 5 ms)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    ))
}

/// Runs the section: `records` records over `keys` keys.
pub fn run(records: u64, keys: u64) -> Result<Vec<Row>, String> {
    let broker = EmbeddedBroker::start().map_err(|e| e.to_string())?;
    let bootstrap = broker.bootstrap();
    let topic = "query-bench";
    broker.create_topic(topic, 3);
    let expected = feed(&bootstrap, topic, 0, records, keys);
    let table = format!("{topic}-counts");
    let (port_a, port_b) = (free_port(), free_port());
    let (server_a, server_b) = (format!("127.0.0.1:{port_a}"), format!("127.0.0.1:{port_b}"));
    let a = start(&bootstrap, "bench-queries", topic, Some(&server_a));
    let http_a = a
        .queries()
        .serve_http(server_a.parse().unwrap())
        .map_err(|e| e.to_string())?;
    let pg_a = a
        .queries()
        .serve_pg("127.0.0.1:0".parse().unwrap(), None)
        .map_err(|e| e.to_string())?;
    let b = start(&bootstrap, "bench-queries", topic, Some(&server_b));
    let http_b = b
        .queries()
        .serve_http(server_b.parse().unwrap())
        .map_err(|e| e.to_string())?;
    let qa = a.queries();
    wait_counted(&qa, &table, records as i64)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let held_by_a = loop {
        let held: Vec<i32> = qa.stores().into_iter().flat_map(|s| s.partitions).collect();
        if !held.is_empty() && held.len() < 3 {
            break held;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the two workers never shared the partitions: A holds {held:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_counted(&qa, &table, records as i64)?;
    let mut rows = Vec::new();

    // Full scan into Arrow, every partition (some routed): the median of five.
    let mut scans = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let scan = qa
            .sql(&format!("SELECT key, value FROM \"{table}\""))
            .map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        if scan.rows() != expected.len() {
            return Err(format!(
                "the scan read {} rows of {}",
                scan.rows(),
                expected.len()
            ));
        }
        // Every row's count too, not only how many rows.
        let mut got = BTreeMap::new();
        for batch in &scan.batches {
            let column = |name: &str| batch.column_by_name(name).cloned();
            let (Some(keys), Some(values)) = (column("key"), column("value")) else {
                return Err("the scan has no key or value column".into());
            };
            let keys = keys.as_any().downcast_ref::<StringArray>();
            let values = values.as_any().downcast_ref::<Int64Array>();
            let (Some(keys), Some(values)) = (keys, values) else {
                return Err("the scan's key or value column has another type".into());
            };
            for (k, v) in keys.iter().zip(values.iter()) {
                got.insert(k.unwrap_or_default().to_string(), v.unwrap_or_default());
            }
        }
        if got != expected {
            return Err("the scan's counts differ from the feed's".into());
        }
        scans.push((elapsed, scan));
    }
    scans.sort_by_key(|(elapsed, _)| *elapsed);
    let (elapsed, scan) = scans.swap_remove(2);
    rows.push(
        Row::new(
            "queries",
            "full scan into Arrow (two workers, 1 of 3 partitions routed or more)",
            scan.rows() as u64,
            elapsed,
        )
        .noted("target ≥ 1 000 000 rows/s"),
    );

    let partition_of = |k: &str| -> Result<i32, String> {
        let sql = format!("SELECT partition FROM \"{table}\" WHERE key = '{k}'");
        let json = qa
            .sql(&sql)
            .and_then(|a| a.to_json())
            .map_err(|e| e.to_string())?;
        let rows: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        rows[0]["partition"]
            .as_i64()
            .map(|p| p as i32)
            .ok_or(format!("no partition for {k}"))
    };
    let sample: Vec<(String, i64, bool)> = expected
        .iter()
        .step_by((expected.len() / 400).max(1))
        .map(|(k, n)| Ok((k.clone(), *n, held_by_a.contains(&partition_of(k)?))))
        .collect::<Result<_, String>>()?;
    // Lookups while the application processes: a feed paced as a busy demo would send it,
    // then one flat out (the machine's every core busy with the feed, the broker and the
    // two workers).
    let loads = [
        ("2 000 records/s (ten times the demo's rate)", Some(2_000.0)),
        ("a feed flat out", None),
    ];
    for (load, rate) in loads {
        let processing = Arc::new(AtomicBool::new(true));
        let feeder = {
            let (processing, bootstrap) = (Arc::clone(&processing), bootstrap.clone());
            std::thread::spawn(move || {
                let p = bulk_producer(&bootstrap);
                let started = Instant::now();
                let mut i = 0u64;
                while processing.load(Ordering::Relaxed) {
                    // Keys outside the ones looked up, so every answer stays checkable.
                    let k = format!("busy-{}", i % 1_000);
                    let _ = p.send(
                        BaseRecord::to("query-bench")
                            .key(&k)
                            .payload("x")
                            .timestamp(2_000_000),
                    );
                    i += 1;
                    match rate {
                        // Paced: the record's due time, then the next.
                        Some(rate) => {
                            let due = started + Duration::from_secs_f64(i as f64 / rate);
                            p.poll(due.saturating_duration_since(Instant::now()));
                        }
                        None if i.is_multiple_of(200) => {
                            p.poll(Duration::from_millis(10));
                        }
                        None => {}
                    }
                }
                let _ = p.flush(Duration::from_secs(30));
            })
        };
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let url = format!("http://{server_a}/query");
        let pg_port = pg_a.local_addr().port();
        let timings = runtime.block_on(async {
            let web = reqwest::Client::new();
            let (client, connection) = tokio_postgres::connect(
                &format!("host=127.0.0.1 port={pg_port} user=eddy"),
                tokio_postgres::NoTls,
            )
            .await
            .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let lookup = client
                .prepare(&format!("SELECT value FROM \"{table}\" WHERE key = $1"))
                .await
                .map_err(|e| e.to_string())?;
            let mut timings: BTreeMap<(&str, bool), Vec<Duration>> = BTreeMap::new();
            for round in 0..5 {
                for (k, n, local) in &sample {
                    let body = serde_json::json!({
                        "sql": format!("SELECT value FROM \"{table}\" WHERE key = '{k}'")
                    });
                    let started = Instant::now();
                    let response = web
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let text = response.text().await.map_err(|e| e.to_string())?;
                    let took = started.elapsed();
                    if text != format!("[{{\"value\":{n}}}]") {
                        return Err(format!("HTTP lookup of {k}: {text}, wanted {n}"));
                    }
                    let started = Instant::now();
                    let got = client
                        .query(&lookup, &[k])
                        .await
                        .map_err(|e| e.to_string())?;
                    let pg_took = started.elapsed();
                    if got.len() != 1 || got[0].get::<_, i64>(0) != *n {
                        return Err(format!("Postgres lookup of {k}: wanted {n}"));
                    }
                    // The first round warms connections and caches.
                    if round > 0 {
                        timings.entry(("HTTP", *local)).or_default().push(took);
                        timings
                            .entry(("Postgres", *local))
                            .or_default()
                            .push(pg_took);
                    }
                }
            }
            Ok::<_, String>(timings)
        })?;
        processing.store(false, Ordering::Relaxed);
        let _ = feeder.join();
        for ((protocol, local), lookups) in timings {
            let place = if local {
                "local"
            } else {
                "routed to the other worker"
            };
            rows.push(latency_row(
                format!("point lookup over {protocol}, {place}, while processing {load}"),
                lookups,
            ));
        }
    }
    drop((http_a, http_b, pg_a));
    b.close().map_err(|e| e.to_string())?;
    a.close().map_err(|e| e.to_string())?;

    // Processing with and without queries: the same feed, twice, each in a fresh application.
    let rate = |app: &str, queried: bool| -> Result<Row, String> {
        let topic = format!("query-bench-{app}");
        broker.create_topic(&topic, 3);
        feed(&bootstrap, &topic, 0, records, keys);
        let started = Instant::now();
        let worker = start(&bootstrap, app, &topic, None);
        let q = worker.queries();
        let table = format!("{topic}-counts");
        let stop = Arc::new(AtomicBool::new(false));
        let asking = queried.then(|| {
            let (q, stop, table) = (q.clone(), Arc::clone(&stop), table.clone());
            std::thread::spawn(move || {
                let mut asked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = key(asked, 1_000);
                    let _ = q.sql(&format!("SELECT value FROM \"{table}\" WHERE key = '{k}'"));
                    asked += 1;
                }
                asked
            })
        });
        wait_counted(&q, &table, records as i64)?;
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let asked = asking.map(|t| t.join().unwrap_or(0));
        worker.close().map_err(|e| e.to_string())?;
        let workload = match asked {
            Some(n) => format!("counting while one client looks keys up non-stop ({n} lookups)"),
            None => "counting with no queries".to_string(),
        };
        Ok(Row::new("queries", workload, records, elapsed))
    };
    // One pair of runs differs by ±15 % on a 2-core machine with nothing changed: three pairs,
    // each quiet run beside its busy one, and the median of each kind.
    let (mut quiet, mut busy) = (Vec::new(), Vec::new());
    for pair in 0..3 {
        quiet.push(rate(&format!("bench-queries-quiet-{pair}"), false)?);
        busy.push(rate(&format!("bench-queries-busy-{pair}"), true)?);
    }
    let median = |mut runs: Vec<Row>| {
        runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        runs.swap_remove(1)
    };
    let (quiet, busy) = (median(quiet), median(busy));
    let drop = 1.0 - busy.rate() / quiet.rate();
    rows.push(busy.noted(format!(
        "{:.0} % slower than without queries, medians of three runs each (target < 20 %)",
        drop * 100.0
    )));
    rows.push(quiet.noted("the median of three runs"));
    Ok(rows)
}
