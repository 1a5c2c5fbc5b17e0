//! Every platform topology on the shared generator's events (fixed seed, with late, duplicate
//! and bad records): it runs through, and each bad record of the topics it reads reaches the
//! dead-letter path with the reason a plain classification of its bytes gives. quiz-results is
//! also checked against a plain grading of the generated events.

mod common;

use std::collections::BTreeMap;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, StreamsConfig};
use eddy_topologies::generator::{GeneratedRecord, Generator, GeneratorConfig};
use eddy_topologies::quiz_results::QuizResult;
use serde_json::Value;

const DOCS: &[&str] = &[
    "document.uploaded",
    "document.processing",
    "document.processed",
    "document.indexed",
    "document.error",
    "notes.generated",
    "audio.transcription.completed",
];
const QUIZ: &[&str] = &[
    "quiz.requested",
    "quiz.generated",
    "quiz.submitted",
    "quiz.failed",
];

/// (topic, known event types, entity id) of what each topology reads.
fn inputs(name: &str) -> Vec<(&'static str, &'static [&'static str], &'static str)> {
    match name {
        "quiz-results" => vec![("quiz-events", QUIZ, "quiz_id")],
        "document-quiz-saga" | "notifications" | "document-lifecycle" => vec![
            ("document-events", DOCS, "document_id"),
            ("quiz-events", QUIZ, "quiz_id"),
        ],
        "active-users" => vec![(
            "analytics-events",
            &[
                "page.view",
                "feature.used",
                "error.occurred",
                "user.activity",
            ],
            "user_id",
        )],
        "emotion-aggregates" => vec![("emotion.detected", &["emotion.detected"], "child_id")],
        "plagiarism-stats" => vec![
            (
                "paper_uploaded",
                &["paper_uploaded", "paper.uploaded"],
                "submission_id",
            ),
            (
                "plagiarism_checked",
                &["plagiarism_checked", "plagiarism.checked"],
                "submission_id",
            ),
        ],
        _ => vec![],
    }
}

/// The dead-letter reason of a record, worked out plainly from its bytes (None: it is fine).
fn expected_reason(value: &[u8], known: &[&str], entity: &str) -> Option<String> {
    let Ok(v) = serde_json::from_slice::<Value>(value) else {
        return Some("undecodable".into());
    };
    let Some(obj) = v.as_object() else {
        return Some("undecodable".into());
    };
    let Some(t) = obj.get("event_type").and_then(Value::as_str) else {
        return Some("missing event_type".into());
    };
    if !known.contains(&t) {
        return Some(format!("unknown event_type `{t}`"));
    }
    let id = obj
        .get(entity)
        .or_else(|| obj.get("payload").and_then(|p| p.get(entity)))
        .and_then(Value::as_str);
    match id {
        Some(s) if !s.is_empty() => None,
        _ => Some(format!("missing entity id `{entity}`")),
    }
}

fn records() -> Vec<GeneratedRecord> {
    Generator::new(GeneratorConfig {
        seed: 42,
        count: 6_000,
        bad_share: 0.03,
        late_share: 0.05,
        ..Default::default()
    })
    .collect()
}

#[test]
fn every_topology_runs_the_generated_mix_and_dead_letters_exactly_the_bad_records() {
    let records = records();
    for entry in eddy_topologies::registry()
        .into_iter()
        .filter(|e| !e.name.ends_with("word-count"))
    {
        let reads = inputs(entry.name);
        assert!(!reads.is_empty(), "{} has inputs in this test", entry.name);
        let d =
            TopologyTestDriver::in_memory((entry.build)().unwrap(), StreamsConfig::new(entry.name))
                .unwrap();
        let mut expected = Vec::new();
        for r in &records {
            let Some((_, known, entity)) = reads.iter().find(|(t, _, _)| *t == r.topic) else {
                continue;
            };
            if let Some(reason) = expected_reason(&r.value, known, entity) {
                expected.push(reason);
            }
            d.pipe_raw(
                r.topic,
                Some(r.key.clone().into_bytes()),
                Some(r.value.clone()),
                r.timestamp_ms,
                Headers::new(),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", entry.name));
        }
        let got: Vec<String> = d
            .dead_letters()
            .into_iter()
            .map(|r| {
                if r.error.starts_with("undecodable") {
                    "undecodable".to_string()
                } else {
                    r.error
                }
            })
            .collect();
        assert!(
            !expected.is_empty(),
            "{}: the mix has bad records",
            entry.name
        );
        assert_eq!(got, expected, "{}: dead letters", entry.name);
    }
}

#[test]
fn quiz_results_of_the_generated_mix_match_a_plain_grading() {
    let d = TopologyTestDriver::in_memory(
        eddy_topologies::quiz_results::quiz_results(&Default::default()).unwrap(),
        StreamsConfig::new("quiz"),
    )
    .unwrap();
    let mut grading = common::QuizGrading::default();
    for r in records().into_iter().filter(|r| r.topic == "quiz-events") {
        d.pipe_raw(
            r.topic,
            Some(r.key.clone().into_bytes()),
            Some(r.value.clone()),
            r.timestamp_ms,
            Headers::new(),
        )
        .unwrap();
        grading.see(&r.value);
    }
    let graded = grading.graded;
    assert!(graded.len() > 100);
    let store = d
        .key_value_store::<String, QuizResult>("quiz_results")
        .unwrap();
    let got: BTreeMap<String, (u32, u32)> = store
        .all()
        .unwrap()
        .into_iter()
        .map(|(k, r)| (k, (r.correct, r.total)))
        .collect();
    assert_eq!(got, graded);
}
