//! A seeded, realistic event mix for every platform topic: documents moving through their
//! lifecycle (some failing, some stalling), quizzes generated then submitted, emotions, page
//! views, papers and plagiarism checks, with a share of late and out-of-order events and a share
//! of bad records. Tests, benchmarks and `eddy generate` share it.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Records in all.
    pub count: usize,
    /// Event time of the first record (ms since the epoch).
    pub start_ms: i64,
    /// Event time between consecutive records, on average (ms).
    pub spacing_ms: i64,
    /// Share of records whose event time lies up to `max_lateness_ms` in the past.
    pub late_share: f64,
    pub max_lateness_ms: i64,
    /// Share of bad records: malformed JSON, a missing entity id or an unknown event type.
    pub bad_share: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            count: 10_000,
            start_ms: 1_767_225_600_000,
            spacing_ms: 100,
            late_share: 0.05,
            max_lateness_ms: 30_000,
            bad_share: 0.01,
        }
    }
}

/// One record for a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRecord {
    pub topic: &'static str,
    pub key: String,
    pub value: Vec<u8>,
    pub timestamp_ms: i64,
}

impl GeneratedRecord {
    /// The record as one JSON line: `{"topic", "key", "timestamp", "value"}`, where `value` is
    /// the JSON value, or a string when the value is not valid JSON.
    pub fn to_json_line(&self) -> String {
        let value = serde_json::from_slice::<Value>(&self.value)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.value).into_owned()));
        json!({"topic": self.topic, "key": self.key, "timestamp": self.timestamp_ms, "value": value}).to_string()
    }
}

/// RFC 3339 text of a time in ms.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

struct Doc {
    id: String,
    user: String,
    step: usize,
    fails: bool,
    stalls_at: Option<usize>,
}

/// The generator: an iterator of records.
pub struct Generator {
    config: GeneratorConfig,
    rng: StdRng,
    emitted: usize,
    clock: i64,
    next_id: u64,
    docs: Vec<Doc>,
    quizzes: Vec<(String, String, Vec<(String, String)>)>,
    papers: VecDeque<(String, String)>,
    pending: VecDeque<GeneratedRecord>,
}

const DOC_STEPS: [&str; 6] = [
    "document.uploaded",
    "document.processing",
    "document.processed",
    "notes.generated",
    "quiz.requested",
    "quiz.generated",
];
const EMOTIONS: [&str; 5] = ["happy", "sad", "excited", "calm", "frustrated"];
const PAGE_EVENTS: [&str; 4] = [
    "page.view",
    "feature.used",
    "error.occurred",
    "user.activity",
];

impl Generator {
    /// A generator for `config`.
    pub fn new(config: GeneratorConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        let clock = config.start_ms;
        Self {
            config,
            rng,
            emitted: 0,
            clock,
            next_id: 0,
            docs: Vec::new(),
            quizzes: Vec::new(),
            papers: VecDeque::new(),
            pending: VecDeque::new(),
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:06}", self.next_id)
    }

    fn event_time(&mut self) -> i64 {
        if self.rng.random_bool(self.config.late_share.clamp(0.0, 1.0)) {
            self.clock
                - self
                    .rng
                    .random_range(1..=self.config.max_lateness_ms.max(1))
        } else {
            self.clock
        }
    }

    fn nested(
        &mut self,
        topic: &'static str,
        key: &str,
        event_type: &str,
        payload: Value,
    ) -> GeneratedRecord {
        let t = self.event_time();
        let event_id = self.id("evt");
        let value = json!({"event_id": event_id, "event_type": event_type, "event_timestamp": rfc3339(t), "event_version": "1.0", "payload": payload});
        GeneratedRecord {
            topic,
            key: key.to_string(),
            value: value.to_string().into_bytes(),
            timestamp_ms: self.clock,
        }
    }

    fn flat(&mut self, topic: &'static str, key: &str, mut fields: Value) -> GeneratedRecord {
        let t = self.event_time();
        let event_id = self.id("evt");
        if let Value::Object(m) = &mut fields {
            m.insert("occurred_at".into(), Value::String(rfc3339(t)));
            m.insert("event_id".into(), Value::String(event_id));
        }
        GeneratedRecord {
            topic,
            key: key.to_string(),
            value: fields.to_string().into_bytes(),
            timestamp_ms: self.clock,
        }
    }

    fn bad(&mut self) -> GeneratedRecord {
        let topics = [
            "document-events",
            "quiz-events",
            "analytics-events",
            "emotion.detected",
            "paper_uploaded",
            "plagiarism_checked",
        ];
        let topic = topics[self.rng.random_range(0..topics.len())];
        let value = match self.rng.random_range(0..3) {
            0 => b"{\"event_type\": \"document.uploaded\", \"payload\": {".to_vec(),
            1 => json!({"event_type": "document.uploaded", "payload": {"user_id": "u"}}).to_string().into_bytes(),
            _ => json!({"event_type": "totally.unknown", "document_id": "d", "quiz_id": "q", "child_id": "c", "user_id": "u", "submission_id": "s"}).to_string().into_bytes(),
        };
        GeneratedRecord {
            topic,
            key: "bad".into(),
            value,
            timestamp_ms: self.clock,
        }
    }

    fn step(&mut self) {
        self.clock += self.rng.random_range(0..=2 * self.config.spacing_ms.max(0));
        if self.rng.random_bool(self.config.bad_share.clamp(0.0, 1.0)) {
            let r = self.bad();
            self.pending.push_back(r);
            return;
        }
        match self.rng.random_range(0..100) {
            0..=14 => self.document_step(),
            15..=29 => self.submission(),
            30..=49 => {
                let child = format!("child-{}", self.rng.random_range(0..20));
                let emotion = EMOTIONS[self.rng.random_range(0..EMOTIONS.len())];
                let confidence = (self.rng.random_range(0..=100) as f64) / 100.0;
                let r = self.flat("emotion.detected", &child.clone(), json!({"event_type": "emotion.detected", "child_id": child, "emotion": emotion, "confidence": confidence}));
                self.pending.push_back(r);
            }
            50..=79 => {
                let user = format!("user-{}", self.rng.random_range(0..200));
                let tenant = format!("tenant-{}", self.rng.random_range(0..5));
                let kind = PAGE_EVENTS[self.rng.random_range(0..PAGE_EVENTS.len())];
                let r = self.nested(
                    "analytics-events",
                    &user.clone(),
                    kind,
                    json!({"user_id": user, "tenant_id": tenant, "page": "/home"}),
                );
                self.pending.push_back(r);
            }
            _ => self.paper_step(),
        }
    }

    fn document_step(&mut self) {
        let start_new = self.docs.len() < 5 || self.rng.random_bool(0.3);
        if start_new {
            let id = self.id("doc");
            let user = format!("user-{}", self.rng.random_range(0..200));
            let fails = self.rng.random_bool(0.1);
            let stalls_at = self
                .rng
                .random_bool(0.05)
                .then(|| self.rng.random_range(1..DOC_STEPS.len()));
            self.docs.push(Doc {
                id,
                user,
                step: 0,
                fails,
                stalls_at,
            });
        }
        let i = self.rng.random_range(0..self.docs.len());
        let (id, user, step, fails, stalls_at) = {
            let d = &self.docs[i];
            (d.id.clone(), d.user.clone(), d.step, d.fails, d.stalls_at)
        };
        if stalls_at == Some(step) {
            return;
        }
        let failing_now = fails && step >= 2;
        let (event_type, topic) = if failing_now {
            if step >= 4 {
                ("quiz.failed", "quiz-events")
            } else {
                ("document.error", "document-events")
            }
        } else {
            let t = DOC_STEPS[step];
            (
                t,
                if t.starts_with("quiz.") {
                    "quiz-events"
                } else {
                    "document-events"
                },
            )
        };
        let quiz_id = format!("quiz-of-{id}");
        let mut payload = json!({"document_id": id, "user_id": user, "file_name": format!("{id}.pdf"), "word_count": 100 + step * 10, "notes_id": format!("notes-of-{id}"), "quiz_id": quiz_id, "error": "generator failure"});
        if event_type == "quiz.generated" {
            let questions: Vec<(String, String)> = (0..self.rng.random_range(1..6))
                .map(|q| {
                    (
                        format!("q{q}"),
                        ["a", "b", "c", "d"][self.rng.random_range(0..4)].to_string(),
                    )
                })
                .collect();
            payload["questions"] = Value::Array(
                questions
                    .iter()
                    .map(|(q, a)| json!({"question_id": q, "correct_answer": a}))
                    .collect(),
            );
            self.quizzes
                .push((quiz_id.clone(), user.clone(), questions));
        }
        let key = if topic == "quiz-events" {
            quiz_id
        } else {
            id.clone()
        };
        let r = self.nested(topic, &key, event_type, payload);
        self.pending.push_back(r);
        if failing_now || step + 1 >= DOC_STEPS.len() {
            self.docs.swap_remove(i);
        } else {
            self.docs[i].step += 1;
        }
        // Now and then the same event twice (at-least-once producers).
        if self.rng.random_bool(0.02) {
            if let Some(dup) = self.pending.back().cloned() {
                self.pending.push_back(dup);
            }
        }
    }

    fn submission(&mut self) {
        if self.quizzes.is_empty() {
            return self.document_step();
        }
        let (quiz_id, _, questions) =
            self.quizzes[self.rng.random_range(0..self.quizzes.len())].clone();
        let user = format!("user-{}", self.rng.random_range(0..200));
        let answers: serde_json::Map<String, Value> = questions
            .iter()
            .map(|(q, correct)| {
                let a = if self.rng.random_bool(0.6) {
                    correct.clone()
                } else {
                    "z".to_string()
                };
                (q.clone(), Value::String(a))
            })
            .collect();
        let submission_id = self.id("sub");
        let r = self.nested("quiz-events", &quiz_id.clone(), "quiz.submitted", json!({"quiz_id": quiz_id, "user_id": user, "submission_id": submission_id, "answers": answers}));
        self.pending.push_back(r);
    }

    fn paper_step(&mut self) {
        if !self.papers.is_empty() && self.rng.random_bool(0.5) {
            if let Some((submission, _user)) = self.papers.pop_front() {
                let score = self.rng.random_range(0..=1000) as f64 / 10.0;
                let r = self.flat("plagiarism_checked", &submission.clone(), json!({"event_type": "plagiarism_checked", "submission_id": submission, "score": score, "sources": []}));
                self.pending.push_back(r);
                return;
            }
        }
        let submission = self.id("paper");
        let user = format!("user-{}", self.rng.random_range(0..200));
        let course = format!("course-{}", self.rng.random_range(0..4));
        let assignment = format!("assignment-{}", self.rng.random_range(0..3));
        let r = self.flat("paper_uploaded", &submission.clone(), json!({"event_type": "paper_uploaded", "submission_id": submission, "user_id": user, "course_id": course, "assignment_id": assignment}));
        self.pending.push_back(r);
        self.papers.push_back((submission, user));
    }
}

impl Iterator for Generator {
    type Item = GeneratedRecord;

    fn next(&mut self) -> Option<GeneratedRecord> {
        if self.emitted >= self.config.count {
            return None;
        }
        while self.pending.is_empty() {
            self.step();
        }
        self.emitted += 1;
        self.pending.pop_front()
    }
}

/// Every topic the generator writes, with the partitions and retention of `platform.md`.
pub const PLATFORM_TOPICS: &[(&str, i32, u64)] = &[
    ("document-events", 3, 7),
    ("quiz-events", 3, 30),
    ("assessment-events", 3, 90),
    ("analytics-events", 6, 30),
    ("tutor-queries", 3, 30),
    ("meeting-events", 6, 3),
    ("emotion.detected", 3, 30),
    ("paper_uploaded", 3, 30),
    ("plagiarism_checked", 3, 30),
    ("dlq.failed-events", 1, 30),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_records() {
        let a: Vec<_> = Generator::new(GeneratorConfig {
            count: 500,
            ..Default::default()
        })
        .collect();
        let b: Vec<_> = Generator::new(GeneratorConfig {
            count: 500,
            ..Default::default()
        })
        .collect();
        assert_eq!(a, b);
        let c: Vec<_> = Generator::new(GeneratorConfig {
            count: 500,
            seed: 2,
            ..Default::default()
        })
        .collect();
        assert_ne!(a, c);
    }

    #[test]
    fn the_mix_covers_every_topic_and_the_bad_share() {
        let config = GeneratorConfig {
            count: 5_000,
            bad_share: 0.02,
            ..Default::default()
        };
        let records: Vec<_> = Generator::new(config).collect();
        assert_eq!(records.len(), 5_000);
        for topic in [
            "document-events",
            "quiz-events",
            "analytics-events",
            "emotion.detected",
            "paper_uploaded",
            "plagiarism_checked",
        ] {
            assert!(records.iter().any(|r| r.topic == topic), "{topic}");
        }
        let bad = records.iter().filter(|r| r.key == "bad").count();
        assert!((50..=150).contains(&bad), "about 2% bad: {bad}");
        let line = records[0].to_json_line();
        assert!(line.contains("\"topic\""));
    }
}
