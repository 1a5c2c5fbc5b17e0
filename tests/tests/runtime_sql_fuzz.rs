//! 10 000 random and mutated SQL strings through both endpoints (HTTP and Postgres) of a
//! running application: every one gets an answer or a clear error, nothing panics, every
//! connection stays usable and the application keeps processing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, Grouped, KafkaStreams, Materialized, RuntimeConfig, Serdes, StreamsBuilder,
    StreamsConfig, TimeWindows,
};
use eddy_testkit::EmbeddedBroker;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const SEEDS: &[&str] = &[
    "SELECT key, value FROM counts WHERE key = 'k-3'",
    "SELECT * FROM counts WHERE key IN ('k-1', 'k-2') ORDER BY key LIMIT 5",
    "SELECT key, sum(value) FROM windowed WHERE window_start >= TIMESTAMP '1970-01-01 00:16:40' GROUP BY key",
    "SELECT c.key, c.value, w.value FROM counts c JOIN windowed w ON c.key = w.key",
    "SELECT count(*), max(value), min(key) FROM counts WHERE key BETWEEN 'k-1' AND 'k-5'",
    "EXPLAIN SELECT * FROM counts WHERE key > 'k-4'",
    "SELECT value_json, partition FROM counts WHERE value > 2 AND key < 'k-9'",
    "SELECT CAST(window_start AS BIGINT), window_end FROM windowed ORDER BY 1 DESC LIMIT 3",
    "SELECT key FROM counts UNION ALL SELECT key FROM windowed",
    "WITH t AS (SELECT key, value FROM counts) SELECT * FROM t WHERE value IS NOT NULL",
];

const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "JOIN",
    "ON",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "(",
    ")",
    "'",
    "\"",
    ";",
    ",",
    "*",
    "key",
    "value",
    "counts",
    "windowed",
    "nowhere",
    "NULL",
    "1e309",
    "-9223372036854775808",
    "CAST(",
    "AS",
    "::",
    "$1",
    "DROP TABLE counts",
    "INSERT INTO",
    "COPY",
    "SET",
    "\\",
    "\u{0}",
    "é",
    "🦀",
    "--",
    "/*",
    "*/",
    "AND",
    "OR",
    "NOT",
    "IN",
    "BETWEEN",
    "window_start",
    "TIMESTAMP",
    "'x'",
    "1/0",
    "CASE WHEN",
    "END",
    "OVER ()",
];

fn mutate(rng: &mut StdRng, sql: &str) -> String {
    let mut chars: Vec<char> = sql.chars().collect();
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..4) {
            0 if !chars.is_empty() => {
                let end = (at + rng.random_range(1..8)).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            1 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                let insert: Vec<char> = format!(" {token} ").chars().collect();
                chars.splice(at..at, insert);
            }
            2 if !chars.is_empty() => {
                let i = rng.random_range(0..chars.len());
                chars[i] = char::from(rng.random_range(32u8..127));
            }
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}

/// Query `i` of the run: a seed, a mutated seed, a string of tokens or random characters.
fn query(rng: &mut StdRng, i: usize) -> String {
    match i % 4 {
        0 => SEEDS[rng.random_range(0..SEEDS.len())].to_string(),
        1 | 2 => {
            let seed = SEEDS[rng.random_range(0..SEEDS.len())];
            mutate(rng, seed)
        }
        _ if rng.random_bool(0.5) => (0..rng.random_range(1..12))
            .map(|_| TOKENS[rng.random_range(0..TOKENS.len())])
            .collect::<Vec<_>>()
            .join(" "),
        _ => (0..rng.random_range(0..40))
            .map(|_| char::from(rng.random_range(1u8..127)))
            .collect(),
    }
}

fn feed(bootstrap: &str, from: usize, n: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for i in from..from + n {
        p.send(
            BaseRecord::to("events")
                .key(&format!("k-{}", i % 10))
                .payload("x")
                .timestamp(1_000_000 + i as i64 * 10),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn ten_thousand_random_and_mutated_queries_break_nothing() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", 2);
    feed(&bootstrap, 0, 500);
    let b = StreamsBuilder::new();
    let grouped = b
        .stream(
            &["events"],
            Consumed::with(Serdes::string(), Serdes::string()),
        )
        .group_by_key(Grouped::named("by-key").with(Serdes::string(), Serdes::string()));
    grouped.count(Materialized::named("counts"));
    grouped
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(1)))
        .count(Materialized::named("windowed").with_retention(Duration::from_secs(3600)));
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new("sql-fuzz");
    config
        .set("state.dir", dir.path().to_str().unwrap())
        .unwrap();
    let app =
        KafkaStreams::start(b.build().unwrap(), RuntimeConfig::new(config, &bootstrap)).unwrap();
    let queries = app.queries();
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.progress().records_in.load(Ordering::Relaxed) < 500 {
        assert!(Instant::now() < deadline, "never processed the feed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let http = queries.serve_http("127.0.0.1:0".parse().unwrap()).unwrap();
    let pg = queries
        .serve_pg("127.0.0.1:0".parse().unwrap(), None)
        .unwrap();
    let url = format!("http://{}/query", http.local_addr());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (answered, failed) = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=eddy", pg.local_addr().port()),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let web = reqwest::Client::new();
        let mut rng = StdRng::seed_from_u64(11);
        let (mut answered, mut failed) = (0, 0);
        for i in 0..10_000 {
            let sql = query(&mut rng, i);
            if i % 2 == 0 {
                let body = serde_json::to_vec(&serde_json::json!({ "sql": sql })).unwrap();
                let response = web
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("no HTTP answer to {sql:?}: {e}"));
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                match status {
                    200 => answered += 1,
                    400 => {
                        assert!(text.contains("\"error\""), "{sql:?}: {text}");
                        failed += 1;
                    }
                    other => panic!("{other} to {sql:?}: {text}"),
                }
            } else {
                // The protocol's strings end at a NUL: a client cannot send one.
                let sql = sql.replace('\0', "");
                let result = if i % 4 == 1 {
                    client.simple_query(&sql).await.map(|_| ())
                } else {
                    client.query(&sql, &[]).await.map(|_| ())
                };
                match result {
                    Ok(()) => answered += 1,
                    Err(e) => {
                        assert!(
                            e.code().is_some(),
                            "{sql:?}: an error without a SQLSTATE: {e}"
                        );
                        failed += 1;
                    }
                }
                assert!(!client.is_closed(), "the connection closed after {sql:?}");
            }
        }
        // Still usable after it all.
        let rows = client
            .query("SELECT sum(value) FROM counts", &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 500);
        (answered, failed)
    });
    assert!(
        answered > 2_500 && failed > 2_500,
        "{answered} answered, {failed} failed"
    );
    // And the application went on processing.
    feed(&bootstrap, 500, 500);
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.progress().records_in.load(Ordering::Relaxed) < 1_000 {
        assert!(Instant::now() < deadline, "stopped processing");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(app.is_running());
    pg.close();
    http.close();
    app.close().unwrap();
}
