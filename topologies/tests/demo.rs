//! `eddy demo` (the README's first command), for a few seconds: the embedded broker starts,
//! the generator feeds it, and every platform topology processes records.

use std::process::Command;

#[test]
fn the_demo_runs_every_platform_topology() {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["demo", "--seconds", "8", "--rate", "300"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("embedded Kafka-protocol broker at 127.0.0.1:"),
        "{stdout}"
    );
    let last_round: Vec<&str> = stdout
        .rsplit("-- ")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .collect();
    for name in eddy_topologies::platform::PLATFORM_TOPOLOGIES {
        let line = last_round
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no progress for {name}: {stdout}"));
        let records_in: u64 = line
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(records_in > 0, "{name} processed nothing: {line}");
        let lag: Option<u64> = line
            .split_whitespace()
            .skip_while(|w| *w != "lag")
            .nth(1)
            .and_then(|n| n.parse().ok());
        assert!(lag.is_some(), "{name} shows its input lag: {line}");
        assert!(line.contains("aborts   0"), "{line}");
    }
}

/// The demo's SQL endpoint, as the line it prints says: the platform's stores answer while it
/// runs, and a bad query is a clear error.
#[test]
fn the_demo_answers_sql_over_its_stores() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["demo", "--seconds", "12", "--rate", "300"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let rest = l.strip_prefix("SQL over state: curl -s http://")?;
            Some(rest.split('/').next()?.to_string())
        })
        .expect("the demo prints its SQL endpoint");
    let pg_url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| Some(l.trim().strip_prefix("or: psql ")?.to_string()))
        .expect("the demo prints its psql command");
    let post = |sql: &str| -> (u16, String) {
        let body = serde_json::json!({ "sql": sql }).to_string();
        eddy_testkit::http_post(&addr, "/query", "", &body)
    };
    // The quiz statistics fill within the first seconds; their columns are there before
    // (declared by the store's value type).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(11);
    loop {
        let (status, body) = post("SELECT key, attempts, best_score FROM quiz_stats");
        assert_eq!(status, 200, "{body}");
        let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
        // Two quizzes at least: `eddy query … LIMIT 2` below counts its rows.
        if rows.as_array().is_some_and(|r| r.len() >= 2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no quiz statistics");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let (status, body) = post("SELECT key, attempts FROM quiz_stats WHERE attempts > 0");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"attempts\""), "{body}");
    let (status, body) =
        post("SELECT s.key FROM saga_state s JOIN document_state d ON s.key = d.key LIMIT 1");
    assert_eq!(status, 200, "a join across topologies: {body}");
    let (status, body) = post("DROP TABLE quiz_stats");
    assert_eq!(status, 400, "{body}");
    // `eddy query` prints a table; psql reaches the Postgres endpoint.
    let query = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["query", "--url", &format!("http://{addr}")])
        .arg("SELECT key, attempts FROM quiz_stats ORDER BY key LIMIT 2")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&query.stdout);
    assert!(
        query.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&query.stderr)
    );
    assert!(
        table.starts_with("key") && table.contains("attempts") && table.contains("(2 rows)"),
        "{table}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "query",
            "--url",
            &format!("http://{addr}"),
            "SELECT nope FROM quiz_stats",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("nope"),
        "a clear error"
    );
    let psql = Command::new("psql")
        .args([
            pg_url.as_str(),
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT count(*) > 0 FROM quiz_stats",
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (Debian's postgresql-client, installed by .ci/setup)");
    let answer = String::from_utf8_lossy(&psql.stdout);
    assert!(
        psql.status.success(),
        "{answer}{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    assert_eq!(answer.trim(), "t");
    for _ in lines {}
    assert!(child.wait().unwrap().success());
}
