//! Oracles and helpers shared by the topology tests (each test crate uses a part of them).
#![allow(dead_code)]

use std::collections::BTreeMap;

use eddy_engine::{KafkaStreams, StreamsConfig};
use eddy_topologies::generator::GeneratedRecord;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord};
use serde_json::Value;

/// A producer that places keys as Kafka's default partitioner (and Eddy's sinks) do.
pub fn keyed_producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap()
}

/// Sends a generated record with its key, value and timestamp.
pub fn send(producer: &BaseProducer, r: &GeneratedRecord) {
    producer
        .send(
            BaseRecord::to(r.topic)
                .key(&r.key)
                .payload(&r.value)
                .timestamp(r.timestamp_ms),
        )
        .unwrap();
    producer.poll(std::time::Duration::ZERO);
}

/// Application `app` under exactly-once with its state in `dir`.
pub fn exactly_once(app: &str, dir: &std::path::Path) -> StreamsConfig {
    let mut streams = StreamsConfig::new(app);
    streams.set("state.dir", dir.to_str().unwrap()).unwrap();
    streams
        .set("processing.guarantee", "exactly_once_v2")
        .unwrap();
    streams
}

/// The rows of `sql` over `app`'s state, as JSON objects.
pub fn rows(app: &KafkaStreams, sql: &str) -> Vec<Value> {
    let answer = app.queries().sql(sql).unwrap();
    serde_json::from_str(&answer.to_json().unwrap()).unwrap()
}

/// Quiz grading written plainly: `quiz.generated` gives the right answers, each
/// `quiz.submitted` is graded against them once (a re-delivered submission keeps its grade).
#[derive(Default)]
pub struct QuizGrading {
    quizzes: BTreeMap<String, BTreeMap<String, String>>,
    /// (right answers, questions) per submission id.
    pub graded: BTreeMap<String, (u32, u32)>,
    /// (quiz id, user id) per graded submission id.
    pub owners: BTreeMap<String, (String, String)>,
}

impl QuizGrading {
    /// Takes in one quiz-events value; anything that is not JSON is ignored.
    pub fn see(&mut self, value: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(value) else {
            return;
        };
        let p = &v["payload"];
        match v["event_type"].as_str() {
            Some("quiz.generated") => {
                let qs = p["questions"].as_array().cloned().unwrap_or_default();
                let correct = qs
                    .iter()
                    .map(|q| {
                        (
                            q["question_id"].as_str().unwrap_or_default().to_string(),
                            q["correct_answer"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                self.quizzes.insert(
                    p["quiz_id"].as_str().unwrap_or_default().to_string(),
                    correct,
                );
            }
            Some("quiz.submitted") => {
                let quiz = &self.quizzes[p["quiz_id"].as_str().unwrap_or_default()];
                let right = quiz
                    .iter()
                    .filter(|(q, a)| p["answers"][q.as_str()].as_str() == Some(a.as_str()))
                    .count() as u32;
                let submission = p["submission_id"].as_str().unwrap_or_default().to_string();
                self.graded
                    .entry(submission.clone())
                    .or_insert((right, quiz.len() as u32));
                let text = |field: &str| p[field].as_str().unwrap_or_default().to_string();
                self.owners
                    .entry(submission)
                    .or_insert((text("quiz_id"), text("user_id")));
            }
            _ => {}
        }
    }
}

/// A child process stopped when the test ends, however it ends: SIGTERM first (an `eddy` run
/// then commits and removes its temporary state), SIGKILL after 15 s.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The path of `program`, which `.ci/setup` installs (the test fails saying so if it is not).
pub fn installed(program: &str) -> String {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        !found.is_empty(),
        "`{program}` is not installed: `bash .ci/setup` installs it from Debian's packages"
    );
    found
}

/// `eddy demo` at 300 records/s with its HTTP endpoint on `http`, quiet, killed when dropped.
pub fn demo_on(http: &str) -> Killed {
    Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args([
                "demo",
                "--rate",
                "300",
                "--plain",
                "--http",
                http,
                "--pg",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Headless Chromium's flags on this closed network (no background connections, no sandbox
/// as root), with a profile of its own in `profile`.
pub fn chromium_args(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// A file of the repository, by its path from the root.
pub fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Worker processes and the word count's checks (`kill_workers`, `scale_storm`).
pub mod workers;
