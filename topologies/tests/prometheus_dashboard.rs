//! The Grafana dashboard against a real Prometheus server (Debian's `prometheus`, installed by
//! `.ci/setup`) scraping a running `eddy demo`: every panel's and variable's query answers at
//! least one series; `promtool` finds `/metrics` and the shipped config clean; every metric
//! the demo exports has a panel, and every metric a panel reads is exported.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy_testkit::{free_port, http_get};

mod common;
use common::{chromium_args, demo_on, installed, repo_file, Killed};
use serde_json::Value;

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A panel's or variable's query with the dashboard's variables at "All".
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$application", ".+")
        .replace("$instance", ".+")
}

/// The series Prometheus at `addr` answers for `query` now (an error is a failure).
fn series(addr: &str, query: &str) -> Vec<Value> {
    let (status, body) = http_get(
        addr,
        &format!("/api/v1/query?query={}", percent_encode(query)),
    );
    assert_eq!(status, 200, "{query}: {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "success", "{query}: {body}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every (title, query) of the dashboard's panels, and its variables' `label_values` queries.
fn dashboard_queries() -> (Vec<(String, String)>, Vec<(String, String, String)>) {
    let dashboard: Value = serde_json::from_str(&repo_file("deploy/grafana/dashboards/eddy.json"))
        .expect("the dashboard is JSON");
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            panels.push((
                panel["title"].as_str().unwrap().to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    let mut variables = Vec::new();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["query"].as_str().unwrap();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {query}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        variables.push((
            variable["name"].as_str().unwrap().to_string(),
            selector.trim().to_string(),
            label.trim().to_string(),
        ));
    }
    (panels, variables)
}

/// The metric names a query reads (`eddy_…` and `platform_…`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find(['e', 'p']) {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let starts_a_word = at == 0
            || !rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if starts_a_word && (word.starts_with("eddy_") || word.starts_with("platform_")) {
            names.insert(word.clone());
        }
        rest = &rest[at + word.len().max(1)..];
    }
    names
}

#[test]
fn every_panel_of_the_dashboard_has_data_from_a_running_demo() {
    let prometheus = installed("prometheus");
    let promtool = installed("promtool");
    let (panels, variables) = dashboard_queries();
    assert!(panels.len() >= 30, "{} panels", panels.len());

    // The demo, its metrics on a known port.
    let http = format!("127.0.0.1:{}", free_port());
    let _demo = demo_on(&http);
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (status, text) = std::net::TcpStream::connect(&http)
            .map(|_| http_get(&http, "/metrics"))
            .unwrap_or((0, String::new()));
        let running = text
            .lines()
            .filter(|l| l.starts_with("eddy_client_state{") && l.contains("state=\"running\"} 1"))
            .count();
        if status == 200 && running == eddy_topologies::platform::PLATFORM_TOPOLOGIES.len() {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the demo's /metrics never came up: {status}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };

    // promtool on what the demo exports and on the shipped config.
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), metrics.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && complaints.trim().is_empty(),
        "promtool check metrics: {complaints}"
    );
    let config = format!(
        "{}/../deploy/prometheus/prometheus.yml",
        env!("CARGO_MANIFEST_DIR")
    );
    let checked = Command::new(&promtool)
        .args(["check", "config", &config])
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Every exported family has a panel; every metric a panel reads is exported (once the
    // demo has done what makes a labelled family appear: a dead letter, a drop, a restore).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (exported, read) = loop {
        let (_, metrics) = http_get(&http, "/metrics");
        let families: BTreeSet<(String, String)> = metrics
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| (name.to_string(), kind.to_string()))
            .collect();
        let exported: BTreeSet<String> = families.iter().map(|(n, _)| n.clone()).collect();
        let read: BTreeSet<String> = panels
            .iter()
            .flat_map(|(_, expr)| metric_names(expr))
            .map(|name| {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| families.contains(&(base.to_string(), "histogram".to_string())));
                base.map_or(name.clone(), str::to_string)
            })
            .collect();
        if read.is_subset(&exported) || Instant::now() > deadline {
            break (exported, read);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let unused: Vec<&String> = exported.difference(&read).collect();
    let unknown: Vec<&String> = read.difference(&exported).collect();
    assert!(unused.is_empty(), "metrics no panel shows: {unused:?}");
    assert!(
        unknown.is_empty(),
        "panel metrics nothing exports: {unknown:?}"
    );

    // A real Prometheus scraping the demo every second.
    let data = tempfile::tempdir().unwrap();
    let prometheus_yml = data.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_yml,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: eddy\n    static_configs:\n      - targets: ['{http}']\n"
        ),
    )
    .unwrap();
    let prometheus_addr = format!("127.0.0.1:{}", free_port());
    let _prometheus = Killed(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", prometheus_yml.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Until every query has a series (rates need two scrapes; the first failed saga its
    // compensation), for two minutes at most.
    let deadline = Instant::now() + Duration::from_secs(120);
    let empty = loop {
        let up = std::net::TcpStream::connect(&prometheus_addr).is_ok()
            && !series(&prometheus_addr, "up{job=\"eddy\"} == 1").is_empty();
        let empty: Vec<&(String, String)> = if up {
            panels
                .iter()
                .filter(|(_, expr)| series(&prometheus_addr, &expand(expr)).is_empty())
                .collect()
        } else {
            panels.iter().collect()
        };
        if empty.is_empty() || Instant::now() > deadline {
            break empty;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(empty.is_empty(), "panels without data: {empty:#?}");
    // Pictures of the dashboard's data: Prometheus' own graph of some panels' queries, in
    // headless Chromium, saved as test artifacts.
    for (file, title) in [
        ("prometheus-throughput.png", "Records processed per second"),
        ("prometheus-lag.png", "Consumer lag (records)"),
        ("prometheus-sagas.png", "Sagas finished by outcome"),
    ] {
        let (_, expr) = panels.iter().find(|(t, _)| t == title).unwrap();
        let url = format!(
            "http://{prometheus_addr}/graph?g0.expr={}&g0.tab=0&g0.range_input=1m",
            percent_encode(&expand(expr))
        );
        let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(file);
        let _ = std::fs::remove_file(&artifact);
        let profile = tempfile::tempdir().unwrap();
        let shot = Command::new(installed("chromium"))
            .args(chromium_args(profile.path()))
            .args(["--window-size=1400,900", "--virtual-time-budget=10000"])
            .arg(format!("--screenshot={}", artifact.display()))
            .arg(&url)
            .output()
            .unwrap();
        let png = std::fs::read(&artifact).unwrap_or_else(|e| {
            panic!(
                "no screenshot of {title} ({e}): {}",
                String::from_utf8_lossy(&shot.stderr)
            )
        });
        assert!(png.starts_with(b"\x89PNG"), "{title}");
        println!("dashboard data screenshot: {}", artifact.display());
    }
    for (name, selector, label) in &variables {
        let found = series(&prometheus_addr, &expand(selector));
        assert!(
            !found.is_empty(),
            "variable {name}: {selector} has no series"
        );
        assert!(
            found
                .iter()
                .all(|s| s["metric"][label.as_str()].is_string()),
            "variable {name}: series without `{label}`"
        );
    }
}

#[test]
fn the_grafana_provisioning_names_the_dashboards_datasource() {
    let datasource = repo_file("deploy/grafana/provisioning/datasources/prometheus.yml");
    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/dashboards/eddy.json")).unwrap();
    let uid_line = "uid: eddy-prometheus";
    assert!(datasource.contains(uid_line), "{datasource}");
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "eddy-prometheus", "{panel}");
        }
    }
    let rows: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert_eq!(
        rows,
        [
            "Overview",
            "Throughput and latency",
            "Threads and tasks",
            "Lag and transactions",
            "Windows and late records",
            "State stores and RocksDB",
            "Restoration",
            "Sagas and events"
        ]
    );
    let provider = repo_file("deploy/grafana/provisioning/dashboards/eddy.yml");
    assert!(
        provider.contains("path: /var/lib/grafana/dashboards"),
        "{provider}"
    );
}
