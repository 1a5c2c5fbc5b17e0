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
