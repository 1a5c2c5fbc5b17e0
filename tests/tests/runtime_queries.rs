//! Interactive queries of a running application: typed reads of its persistent stores, which
//! answer from committed state only and say the input position they reflect.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Int64Array, StringArray};
use eddy_engine::{
    Consumed, ErrorKind, Grouped, KafkaStreams, Materialized, RuntimeConfig, Serdes, SqlState,
    StreamsBuilder, StreamsConfig, TimeWindows, Topology,
};
use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const WORDS: [&str; 5] = ["apple", "banana", "cherry", "damson", "elder"];

/// Word i of the feed, at event time `i * 100` ms.
fn word(i: usize) -> &'static str {
    WORDS[(i * 7 + i / 3) % WORDS.len()]
}

fn feed(bootstrap: &str, n: usize) -> BTreeMap<String, i64> {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let w = word(i);
        p.send(
            BaseRecord::to("words")
                .key(w)
                .payload("x")
                .timestamp(1_000_000 + i as i64 * 100),
        )
        .unwrap();
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    p.flush(Duration::from_secs(30)).unwrap();
    counts
}

/// Counts per word (`counts`), per word and 10-second window (`windowed`, kept an hour so
/// that every window of the feed stays), and an in-memory copy (`counts-in-memory`).
fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let words = b.stream(
        &["words"],
        Consumed::with(Serdes::string(), Serdes::string()),
    );
    let grouped =
        words.group_by_key(Grouped::named("by-word").with(Serdes::string(), Serdes::string()));
    grouped.count(Materialized::named("counts"));
    grouped.count(Materialized::named("counts-in-memory").in_memory());
    grouped
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(10)))
        .count(Materialized::named("windowed").with_retention(Duration::from_secs(3600)));
    b.build().unwrap()
}

fn start(bootstrap: &str, app: &str, commit_ms: &str, dir: &std::path::Path) -> KafkaStreams {
    let mut c = StreamsConfig::new(app);
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("processing.guarantee", "exactly_once_v2").unwrap();
    c.set("commit.interval.ms", commit_ms).unwrap();
    KafkaStreams::start(topology(), RuntimeConfig::new(c, bootstrap)).unwrap()
}

#[test]
fn committed_counts_are_queryable_by_key_range_and_window_with_their_position() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("words", 2);
    const N: usize = 2_000;
    let expected = feed(&bootstrap, N);
    let dir = tempfile::tempdir().unwrap();
    let app = start(&bootstrap, "queries", "100", dir.path());
    let queries = app.queries();
    let counts = queries.key_value::<String, i64>("counts").unwrap();
    // Every record is in once the position reaches the end of both partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    let all = loop {
        let all = counts.all(100).unwrap();
        if all.position.values().sum::<i64>() == N as i64 && all.partitions.len() == 2 {
            break all;
        }
        assert!(Instant::now() < deadline, "never caught up: {all:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        all.value.iter().cloned().collect::<BTreeMap<_, _>>(),
        expected,
        "every count, once"
    );
    let keys: Vec<&String> = all.value.iter().map(|(k, _)| k).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "in key order");
    let banana = counts.get(&"banana".to_string()).unwrap();
    assert_eq!(banana.value, expected.get("banana").copied());
    assert_eq!(counts.get(&"fig".to_string()).unwrap().value, None);
    let middle = counts
        .range(
            Bound::Included(&"banana".to_string()),
            Bound::Excluded(&"damson".to_string()),
            10,
        )
        .unwrap();
    let want: Vec<(String, i64)> = ["banana", "cherry"]
        .iter()
        .map(|w| (w.to_string(), expected[*w]))
        .collect();
    assert_eq!(middle.value, want);
    assert_eq!(counts.all(2).unwrap().value.len(), 2, "the limit holds");

    // Windows: the records of each 10-second window, counted per word.
    let mut windows: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for i in 0..N {
        let start = (1_000_000 + i as i64 * 100) / 10_000 * 10_000;
        *windows.entry((word(i).to_string(), start)).or_insert(0) += 1;
    }
    let windowed = queries.window::<String, i64>("windowed").unwrap();
    let cherry = windowed.fetch(&"cherry".to_string(), 0, i64::MAX).unwrap();
    let want: Vec<(i64, i64)> = windows
        .iter()
        .filter(|((w, _), _)| w == "cherry")
        .map(|((_, start), n)| (*start, *n))
        .collect();
    assert_eq!(cherry.value, want);
    let first = windowed.fetch_all(1_000_000, 1_000_000).unwrap();
    assert_eq!(
        first.value.len(),
        windows.keys().filter(|(_, s)| *s == 1_000_000).count()
    );

    // Wrong queries are clear errors, and the application goes on.
    let e = queries.key_value::<String, i64>("nope").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    let e = queries.window::<String, i64>("counts").unwrap_err();
    assert!(e.to_string().contains("key-value store"), "{e}");
    let e = queries
        .key_value::<String, i64>("counts-in-memory")
        .unwrap_err();
    assert!(e.to_string().contains("in memory"), "{e}");
    assert!(
        queries.key_value::<i64, i64>("counts").is_err(),
        "wrong types"
    );
    let listed: Vec<String> = queries.stores().into_iter().map(|s| s.name).collect();
    assert_eq!(listed, ["counts", "windowed"]);
    assert!(app.is_running());
    app.close().unwrap();

    // A new instance without local state restores the stores from their changelogs: its
    // answers are the same, at the position the changelogs' ends were committed with.
    let fresh = tempfile::tempdir().unwrap();
    let app = start(&bootstrap, "queries", "100", fresh.path());
    let counts = app.queries().key_value::<String, i64>("counts").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let restored = loop {
        let all = counts.all(100).unwrap();
        if all.partitions.len() == 2 {
            break all;
        }
        assert!(Instant::now() < deadline, "never restored: {all:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        restored.value.iter().cloned().collect::<BTreeMap<_, _>>(),
        expected
    );
    assert_eq!(
        restored.position, all.position,
        "the position of the restored state"
    );
    app.close().unwrap();
}

/// Records processed but not committed (a commit interval of an hour) are not in any answer.
#[test]
fn state_of_an_open_transaction_is_not_visible() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("words", 2);
    const N: usize = 500;
    feed(&bootstrap, N);
    let dir = tempfile::tempdir().unwrap();
    let app = start(&bootstrap, "queries-open", "3600000", dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.progress().records_in.load(Ordering::Relaxed) < N as u64 {
        assert!(Instant::now() < deadline, "never processed the feed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let counts = app.queries().key_value::<String, i64>("counts").unwrap();
    let all = counts.all(100).unwrap();
    assert_eq!(all.partitions.len(), 2, "both partitions are held here");
    assert_eq!(app.progress().commits.load(Ordering::Relaxed), 0);
    assert!(all.value.is_empty(), "uncommitted counts: {:?}", all.value);
    assert!(all.position.is_empty(), "{:?}", all.position);
    app.close().unwrap();
}

fn http_post(addr: std::net::SocketAddr, body: &str, accept: &str) -> (u16, String, String) {
    let (status, head, body) = http_post_bytes(addr, body, accept);
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// `POST /query` with `body`, asking for `accept`: the status, the head and the body's bytes.
fn http_post_bytes(addr: std::net::SocketAddr, body: &str, accept: &str) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /query HTTP/1.1\r\nHost: eddy\r\nContent-Type: application/json\r\nAccept: {accept}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response.get(split + 4..).unwrap_or_default().to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, body)
}

#[test]
fn sql_reads_stores_as_tables_over_the_api_and_http() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("words", 2);
    const N: usize = 1_000;
    let expected = feed(&bootstrap, N);
    let dir = tempfile::tempdir().unwrap();
    let app = start(&bootstrap, "queries-sql", "100", dir.path());
    let queries = app.queries();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = queries
            .sql("SELECT sum(value) AS total FROM counts")
            .unwrap();
        if answer.position.values().sum::<i64>() == N as i64 {
            let json: serde_json::Value = serde_json::from_str(&answer.to_json().unwrap()).unwrap();
            assert_eq!(json, serde_json::json!([{ "total": N }]));
            break;
        }
        assert!(Instant::now() < deadline, "never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = |sql: &str| -> serde_json::Value {
        serde_json::from_str(&queries.sql(sql).unwrap().to_json().unwrap()).unwrap()
    };
    assert_eq!(
        rows("SELECT key, value FROM counts WHERE key = 'banana'"),
        serde_json::json!([{ "key": "banana", "value": expected["banana"] }])
    );
    assert_eq!(
        rows("SELECT key FROM counts WHERE key IN ('apple', 'fig', 'elder') ORDER BY key"),
        serde_json::json!([{ "key": "apple" }, { "key": "elder" }])
    );
    assert_eq!(
        rows("SELECT count(*) AS n FROM counts WHERE value > 0"),
        serde_json::json!([{ "n": expected.len() }])
    );
    let plan = |sql: &str| -> String {
        let answer = queries.sql(&format!("EXPLAIN {sql}")).unwrap();
        answer.to_json().unwrap()
    };
    assert!(
        plan("SELECT * FROM counts WHERE key = 'apple'").contains("read=lookup of 1 key(s)"),
        "{}",
        plan("SELECT * FROM counts WHERE key = 'apple'")
    );
    assert!(plan("SELECT * FROM counts WHERE value > 3").contains("read=scan"));
    // A LIMIT with nothing to filter is pushed into the scans (each reads at most that many).
    let limited = "SELECT key FROM counts LIMIT 2";
    assert!(plan(limited).contains("limit=2"), "{}", plan(limited));
    assert_eq!(queries.sql(limited).unwrap().rows(), 2);
    // A scan past the cap on rows fails (54000) rather than answer part of the store; a LIMIT
    // within it reads that many.
    let capped = queries.clone().with_max_scan_rows(2);
    let e = capped.sql("SELECT key FROM counts").unwrap_err();
    assert_eq!(e.sqlstate(), Some(SqlState::ProgramLimitExceeded), "{e}");
    let e = capped.sql("SELECT key FROM windowed").unwrap_err();
    assert_eq!(e.sqlstate(), Some(SqlState::ProgramLimitExceeded), "{e}");
    assert_eq!(capped.sql(limited).unwrap().rows(), 2);
    // Windows, and a join of two stores.
    let cherry = rows(
        "SELECT CAST(window_start AS BIGINT) AS start, value FROM windowed \
         WHERE key = 'cherry' ORDER BY window_start",
    );
    let mut want = Vec::new();
    let mut windows: BTreeMap<i64, i64> = BTreeMap::new();
    for i in 0..N {
        if word(i) == "cherry" {
            *windows
                .entry((1_000_000 + i as i64 * 100) / 10_000 * 10_000)
                .or_insert(0) += 1;
        }
    }
    for (start, n) in windows {
        want.push(serde_json::json!({ "start": start, "value": n }));
    }
    assert_eq!(cherry, serde_json::Value::Array(want));
    let joined = rows(
        "SELECT c.key, c.value AS total, sum(w.value) AS windowed \
         FROM counts c JOIN windowed w ON c.key = w.key GROUP BY c.key, c.value ORDER BY c.key",
    );
    let joined = joined.as_array().unwrap();
    assert_eq!(joined.len(), expected.len());
    for row in joined {
        assert_eq!(
            row["total"], row["windowed"],
            "every record in one window: {row}"
        );
    }

    // Bad queries: clear errors, and nothing changes.
    for bad in [
        "SELECT nope FROM counts",
        "SELECT * FROM nowhere",
        "DROP TABLE counts",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO counts VALUES ('a', 1, '1', 0)",
        "SET datafusion.execution.batch_size = 1",
        "SELEC 1",
        "",
    ] {
        let e = queries.sql(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{bad}: {e}");
    }

    // Every store with its schema, through the API and over HTTP.
    let counts_columns: Vec<String> = queries
        .schema("counts")
        .unwrap()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(counts_columns, ["key", "value", "value_json", "partition"]);
    let windowed_schema = queries.schema("windowed").unwrap();
    for column in ["key", "window_start", "window_end", "value"] {
        assert!(windowed_schema.field_with_name(column).is_ok(), "{column}");
    }
    assert!(queries.schema("no-such-store").is_err());

    // Over HTTP.
    let server = queries.serve_http("127.0.0.1:0".parse().unwrap()).unwrap();
    let (status, listed) = eddy_testkit::http_get(&server.local_addr().to_string(), "/stores");
    assert_eq!(status, 200, "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "counts", "{listed}");
    assert_eq!(listed[0]["kind"], "key-value", "{listed}");
    assert_eq!(
        listed[0]["partitions"],
        serde_json::json!([0, 1]),
        "{listed}"
    );
    assert_eq!(
        listed[0]["columns"][1],
        serde_json::json!({"name": "value", "type": "Int64", "nullable": true}),
        "{listed}"
    );
    assert_eq!(listed[1]["kind"], "window", "{listed}");
    assert!(
        listed[1]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "window_start"),
        "{listed}"
    );
    let (status, head, body) = http_post(
        server.local_addr(),
        r#"{"sql": "SELECT key, value FROM counts ORDER BY key LIMIT 2"}"#,
        "application/json",
    );
    assert_eq!(status, 200, "{head}\n{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!([
            { "key": "apple", "value": expected["apple"] },
            { "key": "banana", "value": expected["banana"] }
        ])
    );
    assert!(
        head.to_lowercase()
            .contains("eddy-position: [[\"words\",0,"),
        "{head}"
    );
    let (status, _, body) = http_post(
        server.local_addr(),
        r#"{"sql": "SELECT key FROM counts WHERE key = 'apple'"}"#,
        "application/x-ndjson",
    );
    assert_eq!((status, body.trim()), (200, r#"{"key":"apple"}"#));
    // Arrow IPC on request: the same rows, typed.
    let (status, head, body) = http_post_bytes(
        server.local_addr(),
        r#"{"sql": "SELECT key, value FROM counts ORDER BY key"}"#,
        "application/vnd.apache.arrow.stream",
    );
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: application/vnd.apache.arrow.stream"),
        "{head}"
    );
    let reader =
        datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .unwrap();
    let mut got = BTreeMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        let keys = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let values = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for (k, v) in keys.iter().zip(values.iter()) {
            got.insert(k.unwrap().to_string(), v.unwrap());
        }
    }
    assert_eq!(got, expected);
    // Each mistake gets its SQLSTATE, as over Postgres.
    for (bad, state) in [
        (r#"{"sql": "SELEC"}"#, "42601"),
        (r#"{"sql": "SELECT * FROM nowhere"}"#, "42P01"),
        (r#"{"sql": "SELECT nope FROM counts"}"#, "42703"),
        (r#"{"sql": "SELECT key + 1 FROM counts"}"#, "42804"),
        (r#"{"sql": "SELECT CAST(key AS INT) FROM counts"}"#, "22P02"),
        (
            r#"{"sql": "SELECT no_such_function(key) FROM counts"}"#,
            "42883",
        ),
        (r#"{"sql": "SELECT * FROM '/etc/passwd'"}"#, "42P01"),
        (r#"{"sql": "DROP TABLE counts"}"#, "25006"),
        (
            r#"{"sql": "INSERT INTO counts VALUES ('a', 1, '1', 0)"}"#,
            "25006",
        ),
        ("not json", "22023"),
    ] {
        let (status, _, body) = http_post(server.local_addr(), bad, "*/*");
        assert_eq!(status, 400, "{bad}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["sqlstate"], state, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    server.close();
    assert!(app.is_running());
    app.close().unwrap();
}
