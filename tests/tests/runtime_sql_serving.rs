//! SQL over a running application's state as users reach it: over the Postgres wire protocol
//! (a driver and `psql`), and from either of two workers that share the partitions, each
//! answering for all of them.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, ErrorKind, Grouped, KafkaStreams, Materialized, QueryOptions, RuntimeConfig, Serdes,
    SessionWindows, SqlAnswer, SqlState, StateQueries, StreamsBuilder, StreamsConfig, TimeWindows,
    Topology,
};
use eddy_testkit::{free_port, http_post, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const KEYS: usize = 40;

/// `n` records over `KEYS` keys into `partitions` partitions; the count per key. Even keys go
/// where Kafka's default partitioner puts them (where a lookup looks first), odd ones to the
/// next partition, so lookups are tested both where they find a key at once and where they
/// must look further.
fn feed(bootstrap: &str, n: usize, partitions: i32) -> BTreeMap<String, i64> {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let (key, partition) = record(i, partitions);
        p.send(
            BaseRecord::to("events")
                .key(&key)
                .partition(partition)
                .payload("x")
                .timestamp(1_000_000 + i as i64 * 100),
        )
        .unwrap();
        *counts.entry(key).or_insert(0) += 1;
    }
    p.flush(Duration::from_secs(30)).unwrap();
    counts
}

/// The key of the feed's record `i` and the partition it goes to (`feed`).
fn record(i: usize, partitions: i32) -> (String, i32) {
    let k = (i * 7) % KEYS;
    let key = format!("user-{k:02}");
    let home = eddy_engine::default_partition(key.as_bytes(), partitions);
    let partition = if k.is_multiple_of(2) {
        home
    } else {
        (home + 1) % partitions
    };
    (key, partition)
}

/// Counts per key (`counts`), per key and 10-second window (`windowed`) and per key and
/// session of activity with gaps under 10 s (`sessions`); with `json_keys` (the single
/// worker, without `application.server`) per JSON key too (`json_keyed`).
fn topology(json_keys: bool) -> Topology {
    let b = StreamsBuilder::new();
    let events = b.stream(
        &["events"],
        Consumed::with(Serdes::string(), Serdes::string()),
    );
    let grouped =
        events.group_by_key(Grouped::named("by-key").with(Serdes::string(), Serdes::string()));
    grouped.count(Materialized::named("counts"));
    grouped
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(10)))
        .count(Materialized::named("windowed").with_retention(Duration::from_secs(3600)));
    grouped
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(
            Duration::from_secs(10),
        ))
        .count(Materialized::named("sessions").with_retention(Duration::from_secs(3600)));
    // The same counts under JSON keys (`"user-00"`, quotes included), whose bytes do not sort
    // as the text does. (A second subtopology: kept out of the two-worker test, whose
    // assignment would then be free to give one worker all of `counts`.)
    if !json_keys {
        return b.build().unwrap();
    }
    events
        .group_by(
            |k: &String, _| k.clone(),
            Grouped::named("by-json-key").with(Serdes::json::<String>(), Serdes::string()),
        )
        .count(Materialized::named("json_keyed"));
    b.build().unwrap()
}

fn start(bootstrap: &str, app: &str, dir: &std::path::Path, server: Option<&str>) -> KafkaStreams {
    let mut c = StreamsConfig::new(app);
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("commit.interval.ms", "100").unwrap();
    if let Some(server) = server {
        c.set("application.server", server).unwrap();
    }
    let json_keys = server.is_none();
    KafkaStreams::start(topology(json_keys), RuntimeConfig::new(c, bootstrap)).unwrap()
}

/// The `key` (text) and `value` (integer) of every row of `answer`, in its order.
fn key_values(answer: &SqlAnswer) -> Vec<(String, i64)> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(&answer.to_json().unwrap()).unwrap();
    rows.iter()
        .map(|row| {
            (
                row["key"].as_str().unwrap().to_string(),
                row["value"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// [`key_values`] as a map, asserting that no key comes twice.
fn key_value_map(answer: &SqlAnswer) -> BTreeMap<String, i64> {
    let rows = key_values(answer);
    let map: BTreeMap<String, i64> = rows.iter().cloned().collect();
    assert_eq!(map.len(), rows.len(), "a key twice");
    map
}

/// `SELECT key, value FROM counts` as a map, if the query answers.
fn counts(queries: &StateQueries) -> eddy_engine::Result<BTreeMap<String, i64>> {
    Ok(key_value_map(
        &queries.sql("SELECT key, value FROM counts")?,
    ))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Postgres client of the endpoint on `port` (no password), its connection driven.
async fn pg_client(port: u16) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=eddy dbname=eddy"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    client
}

/// `SHOW name` of a position setting, as (topic, partition, offset).
async fn show_position(client: &tokio_postgres::Client, name: &str) -> Vec<(String, i32, i64)> {
    let rows = client.query(&format!("SHOW {name}"), &[]).await.unwrap();
    let text: String = rows[0].get(0);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("SHOW {name}: {text}: {e}"))
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.code().code(), db.message()),
        None => format!("no code: {e}"),
    }
}

#[test]
fn the_postgres_endpoint_answers_drivers_and_psql() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", 2);
    const N: usize = 1_000;
    let expected = feed(&bootstrap, N, 2);
    let dir = tempfile::tempdir().unwrap();
    let app = start(&bootstrap, "sql-pg", dir.path(), None);
    let queries = app.queries();
    wait_for("all counted", || {
        counts(&queries).is_ok_and(|c| c == expected)
    });
    // A comparison of a key whose bytes do not sort as its text is evaluated, never read as
    // a range of bytes.
    let above: BTreeMap<String, i64> = expected
        .iter()
        .filter(|(k, _)| k.as_str() >= "user-30")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    wait_for("the JSON-keyed store counted", || {
        queries
            .sql("SELECT sum(value) AS n FROM json_keyed")
            .is_ok_and(|a| a.to_json().unwrap() == format!("[{{\"n\":{N}}}]"))
    });
    let answer = queries
        .sql("SELECT key, value FROM json_keyed WHERE key >= 'user-30'")
        .unwrap();
    assert_eq!(key_value_map(&answer), above);
    // A query past its time limit stops with a clear error.
    let brief = QueryOptions {
        time_limit: Duration::from_millis(300),
        ..Default::default()
    };
    let e = queries
        .sql_with(
            "SELECT sum(length(concat(a.key, b.key, c.key, d.key, e.key))) \
             FROM counts a, counts b, counts c, counts d, counts e",
            &brief,
        )
        .unwrap_err();
    assert!(e.to_string().contains("time limit"), "{e}");
    let server = queries
        .serve_pg("127.0.0.1:0".parse().unwrap(), None)
        .unwrap();
    let port = server.local_addr().port();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = pg_client(port).await;
        // Extended protocol: a prepared key lookup, typed.
        for (key, n) in expected.iter().take(5) {
            let rows = client
                .query("SELECT value FROM counts WHERE key = $1", &[key])
                .await
                .unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].get::<_, i64>(0), *n, "{key}");
        }
        // Simple protocol: a whole table, a window query, a join of two stores.
        let rows = client
            .simple_query("SELECT key, value FROM counts ORDER BY key")
            .await
            .unwrap();
        let got: BTreeMap<String, i64> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                    r.get(0).unwrap().to_string(),
                    r.get(1).unwrap().parse().unwrap(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(got, expected);
        let joined = client
            .query(
                "SELECT c.key, c.value, sum(w.value) AS windowed FROM counts c \
                 JOIN windowed w ON c.key = w.key GROUP BY c.key, c.value",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(joined.len(), expected.len());
        for row in &joined {
            assert_eq!(
                row.get::<_, i64>(1),
                row.get::<_, i64>(2),
                "every record in a window"
            );
        }
        // A key range, prepared, against the feed's counts.
        let rows = client
            .query(
                "SELECT key, value FROM counts WHERE key >= $1 AND key < $2 ORDER BY key",
                &[&"user-10", &"user-20"],
            )
            .await
            .unwrap();
        let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let want: Vec<(String, i64)> = expected
            .range("user-10".to_string().."user-20".to_string())
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(got, want);
        // One key's windows, against the windows its records fall in.
        let key = "user-07";
        let rows = client
            .query(
                "SELECT CAST(window_start AS BIGINT) AS start, value FROM windowed \
                 WHERE key = $1 ORDER BY start",
                &[&key],
            )
            .await
            .unwrap();
        let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut want: BTreeMap<i64, i64> = BTreeMap::new();
        for i in (0..N).filter(|i| format!("user-{:02}", (i * 7) % KEYS) == key) {
            *want
                .entry((1_000_000 + i as i64 * 100) / 10_000 * 10_000)
                .or_insert(0) += 1;
        }
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        // Errors carry their SQLSTATE, and the connection goes on.
        for (bad, state) in [
            ("SELECT nope FROM counts", "42703"),
            ("SELECT * FROM nowhere", "42P01"),
            ("SELEC 1", "42601"),
            ("DROP TABLE counts", "25006"),
            ("INSERT INTO counts VALUES ('a', 1)", "25006"),
            ("COPY counts TO '/tmp/eddy-copy'", "25006"),
            ("SET datafusion.execution.batch_size = 1", "55P02"),
            // Type errors, unknown functions, and the ways of reading a file there would be (a
            // file-backed table does not even parse in Postgres' dialect).
            ("SELECT key + 1 FROM counts", "42804"),
            ("SELECT CAST(key AS INT) FROM counts", "22P02"),
            ("SELECT no_such_function(key) FROM counts", "42883"),
            ("SELECT * FROM '/etc/passwd'", "42P01"),
            ("SELECT pg_read_file('/etc/passwd')", "42883"),
            (
                "CREATE EXTERNAL TABLE f STORED AS CSV LOCATION '/etc/passwd'",
                "42601",
            ),
        ] {
            let e = client.simple_query(bad).await.unwrap_err();
            assert!(sqlstate(&e).starts_with(state), "{bad}: {}", sqlstate(&e));
            let e = client.query(bad, &[]).await.unwrap_err();
            assert!(
                sqlstate(&e).starts_with(state),
                "{bad} (prepared): {}",
                sqlstate(&e)
            );
        }
        // A statement past the connection's statement_timeout is canceled, simple or
        // prepared, and the connection goes on.
        client
            .simple_query("SET statement_timeout = 300")
            .await
            .unwrap();
        let heavy = "SELECT sum(length(concat(a.key, b.key, c.key, d.key, e.key))) \
                     FROM counts a, counts b, counts c, counts d, counts e";
        let e = client.simple_query(heavy).await.unwrap_err();
        assert!(sqlstate(&e).starts_with("57014"), "{e:?}");
        let e = client.query(heavy, &[]).await.unwrap_err();
        assert!(sqlstate(&e).starts_with("57014"), "prepared: {e:?}");
        let still = client
            .query("SELECT count(*) FROM counts", &[])
            .await
            .unwrap();
        assert_eq!(still[0].get::<_, i64>(0), expected.len() as i64);
    });
    // psql: the catalog (`\d`, `\d counts`) and a query.
    let psql = |command: &str| {
        let out = Command::new("psql")
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "eddy",
                "-d",
                "eddy",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-c", command])
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql (Debian's postgresql-client, installed by .ci/setup)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "psql {command}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let tables = psql("\\d");
    assert!(
        tables.contains("counts") && tables.contains("windowed"),
        "{tables}"
    );
    let columns = psql("\\d counts");
    for column in ["key", "value", "value_json", "partition"] {
        assert!(columns.contains(column), "{column} in {columns}");
    }
    let lookup = psql("SELECT value FROM counts WHERE key = 'user-00'");
    assert!(
        lookup.contains(&expected["user-00"].to_string()),
        "{lookup}"
    );

    // Positions over Postgres: a connection's last statement's position, and read-your-writes
    // through its bound.
    let expected = runtime.block_on(async {
        let client = pg_client(port).await;
        client
            .simple_query("SELECT count(*) FROM counts")
            .await
            .unwrap();
        let position = show_position(&client, "eddy.position").await;
        assert_eq!(position.len(), 2, "both partitions read: {position:?}");
        assert_eq!(
            position.iter().map(|(_, _, o)| o).sum::<i64>(),
            N as i64,
            "the position of every record counted: {position:?}"
        );
        let other = pg_client(port).await;
        assert!(
            show_position(&other, "eddy.position").await.is_empty(),
            "another connection has read nothing"
        );
        // One simple-query string of two statements: the SHOW answers the position of the
        // SELECT before it, not of the connection's statement before the string.
        let answers = other
            .simple_query("SELECT count(*) FROM counts; SHOW eddy.position")
            .await
            .unwrap();
        let shown: Vec<(String, i32, i64)> = answers
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .last()
            .map(|text| serde_json::from_str(&text).unwrap())
            .expect("the SHOW answers a row");
        assert_eq!(shown, position, "the SHOW in the same string as its SELECT");
        // A cursor's FETCH sends rows its DECLARE read: the SHOW after it answers the
        // DECLARE's position, not that of the statement in between.
        other.batch_execute("BEGIN").await.unwrap();
        other
            .batch_execute("DECLARE reading CURSOR FOR SELECT key, value FROM counts")
            .await
            .unwrap();
        other.simple_query("SELECT 1").await.unwrap();
        assert!(show_position(&other, "eddy.position").await.is_empty());
        // (Simple: datafusion-postgres describes a prepared FETCH as having no columns.)
        let fetched = other.simple_query("FETCH ALL FROM reading").await.unwrap();
        let fetched = fetched
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        assert_eq!(fetched, expected.len());
        assert_eq!(
            show_position(&other, "eddy.position").await,
            position,
            "a FETCH reports its cursor's position"
        );
        other.batch_execute("CLOSE reading").await.unwrap();
        other.batch_execute("COMMIT").await.unwrap();
        // A statement that fails (here past its time limit, waiting for a bound on partition
        // 0 while partition 1 answered) reports no position: it sent no rows whole.
        other
            .batch_execute("SET statement_timeout = 400")
            .await
            .unwrap();
        let far = serde_json::json!([["events", 0, 1_000_000_000]]);
        other
            .batch_execute(&format!("SET eddy.min_position = '{far}'"))
            .await
            .unwrap();
        let e = other
            .query("SELECT key, value FROM counts", &[])
            .await
            .unwrap_err();
        assert!(sqlstate(&e).starts_with("57014"), "{}", sqlstate(&e));
        other
            .batch_execute("RESET eddy.min_position; SET statement_timeout = 0")
            .await
            .unwrap();
        assert!(
            show_position(&other, "eddy.position").await.is_empty(),
            "a failed statement reflects no position"
        );
        // More records, then a bound at their end: the next statement reflects all of them.
        const MORE: usize = 300;
        let more = feed(&bootstrap, MORE, 2);
        let mut bound: BTreeMap<(String, i32), i64> = position
            .iter()
            .map(|(t, p, o)| ((t.clone(), *p), *o))
            .collect();
        for i in 0..MORE {
            *bound.entry(("events".into(), record(i, 2).1)).or_default() += 1;
        }
        let bound_json = serde_json::to_string(
            &bound
                .iter()
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        client
            .batch_execute(&format!("SET eddy.min_position = '{bound_json}'"))
            .await
            .unwrap();
        let mut after = expected.clone();
        for (key, n) in more {
            *after.entry(key).or_default() += n;
        }
        let rows = client
            .query("SELECT key, value FROM counts", &[])
            .await
            .unwrap();
        let got: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            got, after,
            "the answer under the bound has every record before it"
        );
        let read = show_position(&client, "eddy.position").await;
        for (topic, partition, offset) in &read {
            assert!(
                *offset >= bound[&(topic.clone(), *partition)],
                "{read:?} {bound:?}"
            );
        }
        assert_eq!(
            show_position(&client, "eddy.min_position").await.len(),
            2,
            "the bound is shown"
        );
        let e = client
            .batch_execute("SET eddy.min_position = 'events:0:5'")
            .await
            .unwrap_err();
        assert!(sqlstate(&e).starts_with("22023"), "{}", sqlstate(&e));
        for unread in [r#"[["Events", 0, 5]]"#, r#"[["events", 7, 5]]"#] {
            let e = client
                .batch_execute(&format!("SET eddy.min_position = '{unread}'"))
                .await
                .unwrap_err();
            assert!(
                sqlstate(&e).starts_with("22023"),
                "{unread}: {}",
                sqlstate(&e)
            );
        }
        client
            .batch_execute("RESET eddy.min_position")
            .await
            .unwrap();
        assert!(show_position(&client, "eddy.min_position").await.is_empty());
        after
    });

    // Closing the endpoint lets a statement in flight finish: one waiting for records not
    // written yet.
    const LATER: usize = 100;
    let client = runtime.block_on(async {
        let client = pg_client(port).await;
        client
            .simple_query("SELECT count(*) FROM counts")
            .await
            .unwrap();
        let mut bound: BTreeMap<(String, i32), i64> = show_position(&client, "eddy.position")
            .await
            .into_iter()
            .map(|(t, p, o)| ((t, p), o))
            .collect();
        for i in 0..LATER {
            *bound.entry(("events".into(), record(i, 2).1)).or_default() += 1;
        }
        let bound: Vec<(String, i32, i64)> =
            bound.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        client
            .batch_execute(&format!(
                "SET eddy.min_position = '{}'",
                serde_json::to_string(&bound).unwrap()
            ))
            .await
            .unwrap();
        client
    });
    let in_flight = runtime.spawn(async move {
        client
            .query("SELECT sum(value) FROM counts", &[])
            .await
            .map(|rows| rows[0].get::<_, i64>(0))
    });
    std::thread::sleep(Duration::from_millis(300));
    let closing = std::thread::spawn(move || server.close());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !closing.is_finished(),
        "the close waits for the statement in flight"
    );
    let later = feed(&bootstrap, LATER, 2);
    closing.join().unwrap();
    let sum = runtime
        .block_on(in_flight)
        .unwrap()
        .expect("the statement in flight finished");
    let mut expected = expected;
    for (key, n) in later {
        *expected.entry(key).or_default() += n;
    }
    assert_eq!(sum, expected.values().sum::<i64>());

    // With a password: none or a wrong one is refused.
    let server = queries
        .serve_pg("127.0.0.1:0".parse().unwrap(), Some("s3cret".into()))
        .unwrap();
    let port = server.local_addr().port();
    runtime.block_on(async {
        let url = |password: &str| {
            format!("host=127.0.0.1 port={port} user=eddy dbname=eddy password={password}")
        };
        assert!(
            tokio_postgres::connect(&url("wrong"), tokio_postgres::NoTls)
                .await
                .is_err()
        );
        let none = format!("host=127.0.0.1 port={port} user=eddy dbname=eddy");
        assert!(
            tokio_postgres::connect(&none, tokio_postgres::NoTls)
                .await
                .is_err(),
            "a client without the password is let in"
        );
        let (client, connection) = tokio_postgres::connect(&url("s3cret"), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let rows = client
            .query("SELECT count(*) FROM counts", &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), expected.len() as i64);
    });
    server.close();

    // With a cap of 10 rows per partition scan (each partition holds 20 keys): a scan past it
    // fails with 54000, a LIMIT within it and a lookup answer.
    let capped = queries
        .clone()
        .with_max_scan_rows(10)
        .serve_pg("127.0.0.1:0".parse().unwrap(), None)
        .unwrap();
    let port = capped.local_addr().port();
    runtime.block_on(async {
        let client = pg_client(port).await;
        for past in ["SELECT key FROM counts", "SELECT key FROM windowed"] {
            let e = client.query(past, &[]).await.unwrap_err();
            assert!(
                sqlstate(&e).starts_with("54000"),
                "{past}: {}",
                sqlstate(&e)
            );
        }
        let rows = client
            .query("SELECT key FROM counts LIMIT 5", &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 5);
        let rows = client
            .query("SELECT value FROM counts WHERE key = 'user-00'", &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), expected["user-00"]);
    });
    capped.close();
    assert!(app.is_running());
    app.close().unwrap();
}

#[test]
fn either_of_two_workers_answers_for_every_partition() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", 4);
    const N: usize = 4_000;
    let mut expected = feed(&bootstrap, N, 4);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let server_a = format!("127.0.0.1:{port_a}");
    let server_b = format!("127.0.0.1:{port_b}");
    // Both instances ask for (and give each other) one bearer token.
    let token = || Some("s3cret-token".to_string());
    let a = start(&bootstrap, "sql-two", dir_a.path(), Some(&server_a));
    let qa = a.queries().with_token(token()).unwrap();
    let http_a = qa.serve_http(server_a.parse().unwrap()).unwrap();
    let b = start(&bootstrap, "sql-two", dir_b.path(), Some(&server_b));
    let qb = b.queries().with_token(token()).unwrap();
    assert!(
        b.queries().with_token(Some("two words".into())).is_err(),
        "a token a header cannot carry is refused at once"
    );
    let http_b = qb.serve_http(server_b.parse().unwrap()).unwrap();
    // A request without the token, or with another, is refused; so is a read of another
    // instance's partition without it.
    for authorization in ["", "Authorization: Bearer wrong\r\n"] {
        let (status, _) = http_post(&server_a, "/query", authorization, r#"{"sql": "SELECT 1"}"#);
        assert_eq!(status, 401, "{authorization:?}");
    }
    let (status, _) = http_post(
        &server_a,
        "/query",
        "Authorization: Bearer s3cret-token\r\n",
        r#"{"sql": "SELECT 1 AS one"}"#,
    );
    assert_eq!(status, 200);
    let holds = |q: &StateQueries| {
        q.stores()
            .into_iter()
            .find(|s| s.name == "counts")
            .map_or(0, |s| s.partitions.len())
    };
    wait_for("both workers hold partitions", || {
        holds(&qa) > 0 && holds(&qb) > 0 && holds(&qa) + holds(&qb) == 4
    });
    wait_for("every partition published", || {
        qa.sql("SELECT count(*) FROM counts").is_ok()
    });
    let e = a
        .queries()
        .sql("SELECT count(*) FROM counts")
        .expect_err("the other instance's partitions need the token");
    assert!(e.to_string().contains("Bearer"), "{e}");
    // Each worker answers with every key once, whichever worker holds it.
    wait_for("A answers for all", || {
        counts(&qa).is_ok_and(|c| c == expected)
    });
    wait_for("B answers for all", || {
        counts(&qb).is_ok_and(|c| c == expected)
    });
    let answer = qa
        .sql("SELECT sum(value) AS n, count(*) AS keys FROM counts")
        .unwrap();
    let rows: serde_json::Value = serde_json::from_str(&answer.to_json().unwrap()).unwrap();
    assert_eq!(rows, serde_json::json!([{ "n": N, "keys": KEYS }]));
    let partitions: Vec<i32> = answer.position.keys().map(|(_, p)| *p).collect();
    assert_eq!(partitions, [0, 1, 2, 3], "every partition's position");
    // `value_json` is written where it is asked for, here and at the owner.
    let answer = qa
        .sql("SELECT count(*) AS n FROM counts WHERE value_json = CAST(value AS VARCHAR)")
        .unwrap();
    assert_eq!(answer.to_json().unwrap(), format!("[{{\"n\":{KEYS}}}]"));
    // Filters other than keys and windows are shipped to the owners, which send only the rows
    // that pass them; the answer is the oracle's.
    let sql = "SELECT key, value FROM counts WHERE key LIKE '%5' AND value > 0 ORDER BY key";
    let plan = qb
        .sql(&format!("EXPLAIN {sql}"))
        .unwrap()
        .to_json()
        .unwrap();
    assert!(plan.contains("shipped_filters=["), "{plan}");
    let got = key_values(&qb.sql(sql).unwrap());
    let want: Vec<(String, i64)> = expected
        .iter()
        .filter(|(k, _)| k.ends_with('5'))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(got, want);
    // What an owner sends for one of its partitions, with and without a shipped filter.
    let held = qa
        .stores()
        .into_iter()
        .find(|s| s.name == "counts")
        .unwrap()
        .partitions;
    let p = held[0];
    let in_p: std::collections::BTreeSet<String> = (0..N)
        .map(|i| record(i, 4))
        .filter(|(_, partition)| *partition == p)
        .map(|(k, _)| k)
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sent = |filters: &[&str]| -> usize {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::arrow::ipc::{reader::StreamReader, writer::StreamWriter};
        let schema = Schema::new(vec![Field::new("key", DataType::Utf8, true)]);
        let mut ipc = Vec::new();
        StreamWriter::try_new(&mut ipc, &schema)
            .unwrap()
            .finish()
            .unwrap();
        let request = serde_json::json!({
            "store": "counts", "partition": p, "keys": "All", "window": [i64::MIN, i64::MAX],
            "filters": filters, "limit": null, "schema": ipc, "projection": null,
            "min_position": {},
        });
        let body = runtime.block_on(async {
            let response = reqwest::Client::new()
                .post(format!("http://{server_a}/internal/partition"))
                .bearer_auth("s3cret-token")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&request).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap()
        });
        StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum()
    };
    assert_eq!(sent(&[]), in_p.len(), "partition {p} whole");
    assert_eq!(
        sent(&["key LIKE '%5'", "no_such_column > 1"]),
        in_p.iter().filter(|k| k.ends_with('5')).count(),
        "only the rows that pass; a filter the owner cannot read keeps them all"
    );
    drop(runtime);
    // Windows and point lookups route too.
    let windows = qb
        .sql("SELECT sum(value) AS n FROM windowed")
        .unwrap()
        .to_json()
        .unwrap();
    assert_eq!(windows, format!("[{{\"n\":{N}}}]"));
    for (key, count) in &expected {
        let sql = format!("SELECT value FROM counts WHERE key = '{key}'");
        let got = qa.sql(&sql).unwrap().to_json().unwrap();
        assert_eq!(got, format!("[{{\"value\":{count}}}]"), "{key}");
    }
    let keys: Vec<String> = expected.keys().map(|k| format!("'{k}'")).collect();
    let sql = format!(
        "SELECT key, value FROM counts WHERE key IN ({}, 'nobody') ORDER BY key",
        keys.join(", ")
    );
    let plan = qb
        .sql(&format!("EXPLAIN {sql}"))
        .unwrap()
        .to_json()
        .unwrap();
    assert!(plan.contains("in the partitions they hash to"), "{plan}");
    let got: serde_json::Value =
        serde_json::from_str(&qb.sql(&sql).unwrap().to_json().unwrap()).unwrap();
    let want: Vec<serde_json::Value> = expected
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
        .collect();
    assert_eq!(
        got,
        serde_json::Value::Array(want),
        "every key once, found or not at once"
    );
    // Key ranges and window bounds are pushed into the scans, here and at the owner.
    let range =
        "SELECT key, value FROM counts WHERE key >= 'user-10' AND key < 'user-20' ORDER BY key";
    let plan = qa
        .sql(&format!("EXPLAIN {range}"))
        .unwrap()
        .to_json()
        .unwrap();
    assert!(
        plan.contains("range scan of keys [user-10, user-20)"),
        "{plan}"
    );
    let got: Vec<serde_json::Value> =
        serde_json::from_str(&qa.sql(range).unwrap().to_json().unwrap()).unwrap();
    let want: Vec<serde_json::Value> = expected
        .range("user-10".to_string().."user-20".to_string())
        .map(|(k, v)| serde_json::json!({ "key": k, "value": v }))
        .collect();
    assert_eq!(got, want);
    let late =
        "SELECT sum(value) AS n FROM windowed WHERE window_start >= to_timestamp_millis(1200000)";
    let plan = qb
        .sql(&format!("EXPLAIN {late}"))
        .unwrap()
        .to_json()
        .unwrap();
    assert!(plan.contains("windows starting 1200000"), "{plan}");
    let n_late = (0..N)
        .filter(|i| 1_000_000 + *i as i64 * 100 >= 1_200_000)
        .count();
    assert_eq!(
        qb.sql(late).unwrap().to_json().unwrap(),
        format!("[{{\"n\":{n_late}}}]")
    );
    let ends = qa
        .sql("SELECT DISTINCT CAST(window_end AS BIGINT) - CAST(window_start AS BIGINT) AS size FROM windowed")
        .unwrap()
        .to_json()
        .unwrap();
    assert_eq!(
        ends, "[{\"size\":10000}]",
        "window_end is window_start plus the size"
    );
    // Sessions: a key comes every 4 s of event time, so each has one session, from its first
    // record to its last.
    let sessions: Vec<serde_json::Value> = serde_json::from_str(
        &qb.sql(
            "SELECT key, value, CAST(window_start AS BIGINT) AS first, \
             CAST(window_end AS BIGINT) AS last FROM sessions ORDER BY key",
        )
        .unwrap()
        .to_json()
        .unwrap(),
    )
    .unwrap();
    let mut bounds: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in 0..N {
        let ts = 1_000_000 + i as i64 * 100;
        let b = bounds
            .entry(format!("user-{:02}", (i * 7) % KEYS))
            .or_insert((ts, ts));
        b.1 = ts;
    }
    let want: Vec<serde_json::Value> = bounds
        .iter()
        .map(|(k, (first, last))| {
            serde_json::json!({ "key": k, "value": expected[k], "first": first, "last": last })
        })
        .collect();
    assert_eq!(sessions, want);
    // A minimum position: answers only once state reached it (here: it has).
    let options = QueryOptions {
        min_position: answer.position.clone(),
        ..Default::default()
    };
    let again = qb
        .sql_with("SELECT count(*) AS keys FROM counts", &options)
        .unwrap();
    assert!(again.position.iter().all(|(k, o)| answer.position[k] <= *o));
    let mut beyond = QueryOptions::default();
    beyond
        .min_position
        .insert(("events".into(), 0), N as i64 * 10);
    beyond.wait = Duration::from_millis(500);
    let e = qa
        .sql_with("SELECT count(*) FROM counts", &beyond)
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some(SqlState::NotAvailable), "{e}");
    assert_eq!(
        e.kind(),
        ErrorKind::Retriable,
        "a partition that is not there yet: {e}"
    );
    assert!(e.to_string().contains("partition 0"), "{e}");
    // Under a LIMIT the other partitions may answer first and the one still waiting for its
    // bound is never read: a bound on a store the query reads is not a mistake then (it was
    // refused as naming a partition "no store this query read reflects").
    let limited = qa
        .sql_with("SELECT key FROM counts LIMIT 1", &beyond)
        .unwrap();
    assert_eq!(limited.rows(), 1);
    assert!(
        !limited.position.contains_key(&("events".to_string(), 0)),
        "partition 0 was never read: {:?}",
        limited.position
    );
    // Read-your-writes over HTTP: records written now, then a query through B's endpoint for
    // the position they end at. It waits until every partition (some of them A's) has
    // counted them, rather than answer the counts from before.
    const MORE: usize = 400;
    let more = feed(&bootstrap, MORE, 4);
    let mut ends = answer.position.clone();
    for i in 0..MORE {
        *ends
            .get_mut(&("events".to_string(), record(i, 4).1))
            .unwrap() += 1;
    }
    let min_position: Vec<(String, i32, i64)> =
        ends.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect();
    let body = serde_json::json!({
        "sql": "SELECT sum(value) AS n FROM counts",
        "min_position": min_position,
        "wait_ms": 30_000,
    });
    let (status, text) = http_post(
        &server_b,
        "/query",
        "Authorization: Bearer s3cret-token\r\n",
        &body.to_string(),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, format!("[{{\"n\":{}}}]", N + MORE), "read its writes");
    for (k, n) in more {
        *expected.entry(k).or_insert(0) += n;
    }

    // One query during a rebalance: the full answer, or a clear error (module doc).
    let full_or_clear = |q: &StateQueries, full: &mut usize, failed: &mut usize| {
        let options = QueryOptions {
            wait: Duration::from_millis(300),
            ..Default::default()
        };
        match q.sql_with("SELECT key, value FROM counts", &options) {
            Ok(answer) => {
                assert_eq!(
                    key_value_map(&answer),
                    expected,
                    "a partial or wrong answer during the rebalance"
                );
                *full += 1;
            }
            Err(e) => {
                assert_eq!(e.sqlstate(), Some(SqlState::NotAvailable), "{e}");
                *failed += 1;
            }
        }
    };

    // B leaves: while its partitions move to A, A answers in full or fails clearly.
    http_b.close();
    let closing = std::thread::spawn(move || b.close().unwrap());
    let (mut full, mut failed) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while holds(&qa) < 4 || full == 0 {
        full_or_clear(&qa, &mut full, &mut failed);
        assert!(
            Instant::now() < deadline,
            "A never took over ({full} full, {failed} failed)"
        );
    }
    closing.join().unwrap();
    assert_eq!(counts(&qa).unwrap(), expected);

    // C joins: while partitions move from A to C (restored from the changelogs), either
    // answers in full or fails clearly.
    let dir_c = tempfile::tempdir().unwrap();
    let server_c = format!("127.0.0.1:{}", free_port());
    let c = start(&bootstrap, "sql-two", dir_c.path(), Some(&server_c));
    let qc = c.queries().with_token(token()).unwrap();
    let http_c = qc.serve_http(server_c.parse().unwrap()).unwrap();
    let (mut full_a, mut full_c, mut failed) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(holds(&qc) > 0 && holds(&qa) + holds(&qc) == 4 && full_a > 0 && full_c > 0) {
        full_or_clear(&qa, &mut full_a, &mut failed);
        full_or_clear(&qc, &mut full_c, &mut failed);
        assert!(
            Instant::now() < deadline,
            "C never took partitions ({full_a} + {full_c} full, {failed} failed; C holds {})",
            holds(&qc)
        );
    }
    assert!(holds(&qa) > 0, "A keeps some partitions");
    http_c.close();
    c.close().unwrap();
    http_a.close();
    a.close().unwrap();
}
