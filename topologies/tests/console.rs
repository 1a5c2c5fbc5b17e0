//! The web console in headless Chromium (Debian's `chromium` and `chromium-driver`, installed
//! by `.ci/setup`), driven through ChromeDriver's WebDriver protocol during a running demo: the
//! page shows all seven topologies with counts that move, and its SQL box returns rows. A
//! screenshot is saved as a test artifact (`$CARGO_TARGET_TMPDIR/console.png`, and
//! `console-sql.png` of the SQL box's answer).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy_testkit::{free_port, http_get};

mod common;
use common::{chromium_args, demo_on, installed};
use serde_json::{json, Value};

/// One WebDriver command (HTTP/1.1, read by its Content-Length), JSON both ways.
fn webdriver(addr: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(addr).expect("chromedriver accepts");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(s);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut bytes = vec![0; length];
    reader.read_exact(&mut bytes).unwrap();
    let answer: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    assert!(
        answer["value"]["error"].is_null(),
        "{method} {path}: {answer}"
    );
    answer["value"].clone()
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .map(value)
        .collect();
    digits
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |n, d| (n << 6) | u32::from(*d)) << (6 * (4 - c.len()));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(c.len().saturating_sub(1))
        })
        .collect()
}

fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_console_shows_every_topology_moving_and_answers_sql() {
    let chromium = installed("chromium");
    let chromedriver = installed("chromedriver");
    let http = format!("127.0.0.1:{}", free_port());
    let _demo = demo_on(&http);
    wait_for("the demo's console", Duration::from_secs(60), || {
        std::net::TcpStream::connect(&http).ok()?;
        let (status, page) = http_get(&http, "/");
        (status == 200 && page.contains("Eddy console")).then_some(())
    });
    let driver = format!("127.0.0.1:{}", free_port());
    let _chromedriver = common::Killed(
        Command::new(&chromedriver)
            .arg(format!("--port={}", driver.rsplit(':').next().unwrap()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("chromedriver", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&driver).ok()
    });
    let profile = tempfile::tempdir().unwrap();
    let session = webdriver(
        &driver,
        "POST",
        "/session",
        Some(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": chromium_args(profile.path())
                    .into_iter()
                    .chain(["--window-size=1400,1600".to_string()])
                    .collect::<Vec<_>>()
            }
        }}})),
    );
    let id = session["sessionId"].as_str().unwrap().to_string();
    let cmd = |method: &str, path: &str, body: Option<Value>| {
        webdriver(&driver, method, &format!("/session/{id}{path}"), body)
    };
    cmd(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{http}/")})),
    );
    let counts = |cmd: &dyn Fn(&str, &str, Option<Value>) -> Value| -> Vec<(String, u64)> {
        let found = cmd(
            "POST",
            "/execute/sync",
            Some(
                json!({"script": "return [...document.querySelectorAll('.app')].map(a => [a.dataset.app, Number(a.querySelector('.records-in .value').textContent)])", "args": []}),
            ),
        );
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let platform = eddy_topologies::platform::PLATFORM_TOPOLOGIES;
    let first = wait_for(
        "seven topologies with counts",
        Duration::from_secs(60),
        || {
            let c = counts(&cmd);
            (c.len() == platform.len() && c.iter().all(|(_, n)| *n > 0)).then_some(c)
        },
    );
    let mut names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    let mut expected = platform.to_vec();
    expected.sort();
    assert_eq!(names, expected);
    // The page refreshes itself: every topology's count moves.
    wait_for("every count to move", Duration::from_secs(60), || {
        let now = counts(&cmd);
        now.iter()
            .all(|(name, n)| first.iter().any(|(m, before)| m == name && n > before))
            .then_some(())
    });
    // The tasks table lists running tasks; the graph is drawn.
    let tasks = cmd(
        "POST",
        "/execute/sync",
        Some(
            json!({"script": "return [document.querySelectorAll('#tasks tbody tr').length, document.querySelectorAll('.graph svg rect').length, document.querySelector('#tasks tbody').textContent.includes('RUNNING')]", "args": []}),
        ),
    );
    assert!(tasks[0].as_u64().unwrap() >= 7, "{tasks}");
    assert!(tasks[1].as_u64().unwrap() >= 7, "{tasks}");
    assert_eq!(tasks[2], true, "{tasks}");

    // The SQL box: type a query, press Run, read the rows.
    let element = |css: &str| {
        let found = cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let sql = element("#sql");
    cmd("POST", &format!("/element/{sql}/clear"), Some(json!({})));
    cmd(
        "POST",
        &format!("/element/{sql}/value"),
        Some(
            json!({"text": "SELECT status, count(*) AS sagas FROM saga_state GROUP BY status ORDER BY status"}),
        ),
    );
    let run = element("#run");
    cmd("POST", &format!("/element/{run}/click"), Some(json!({})));
    let rows = wait_for("the SQL box's rows", Duration::from_secs(30), || {
        let found = cmd(
            "POST",
            "/execute/sync",
            Some(
                json!({"script": "const t = document.querySelector('#sql-rows'); return t ? [...t.querySelectorAll('tr')].map(r => r.textContent) : null", "args": []}),
            ),
        );
        found.as_array().filter(|r| r.len() > 1).cloned()
    });
    assert!(rows[0].as_str().unwrap().contains("sagas"), "{rows:?}");
    assert!(
        rows.iter()
            .skip(1)
            .any(|r| r.as_str().unwrap().starts_with("running")
                || r.as_str().unwrap().starts_with("completed")
                || r.as_str().unwrap().starts_with("failed")),
        "{rows:?}"
    );
    let error = cmd(
        "POST",
        "/execute/sync",
        Some(
            json!({"script": "return document.querySelector('#sql-error').textContent", "args": []}),
        ),
    );
    assert_eq!(error, "", "no error shown");

    // Screenshots: the SQL answer where the click left the page, then the top of the page.
    for (name, scroll) in [("console-sql.png", None), ("console.png", Some(0))] {
        if let Some(y) = scroll {
            let script = format!("window.scrollTo(0, {y}); return true");
            cmd(
                "POST",
                "/execute/sync",
                Some(json!({"script": script, "args": []})),
            );
        }
        let png = base64_decode(cmd("GET", "/screenshot", None).as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&artifact, &png).unwrap();
        println!("console screenshot: {}", artifact.display());
    }
    webdriver(&driver, "DELETE", &format!("/session/{id}"), None);
}
