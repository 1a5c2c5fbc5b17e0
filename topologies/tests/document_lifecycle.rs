//! document-lifecycle through the test driver: current state and state as of T against a plain
//! replay, with out-of-order and re-delivered events.

use std::collections::BTreeMap;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, StreamsConfig};
use eddy_topologies::document_lifecycle::{
    document_lifecycle, state_as_of, DocumentLifecycleConfig, DocumentState, HistoryEntry,
};
use serde_json::{json, Value};

const BASE: i64 = 1_767_225_600_000;

fn iso(ms: i64) -> String {
    let s = ms / 1000;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

/// What a plain replay of `events` (sorted by time) up to `t` says about a document.
fn replay(
    events: &[(i64, Value)],
    t: i64,
) -> (
    Option<String>,
    Option<String>,
    Option<u64>,
    u64,
    Vec<String>,
) {
    let mut sorted: Vec<&(i64, Value)> = events.iter().filter(|(et, _)| *et <= t).collect();
    sorted.sort_by_key(|(et, _)| *et);
    let (mut status, mut file, mut words, mut quizzes) = (None, None, None, Vec::new());
    for (_, e) in &sorted {
        let p = &e["payload"];
        match e["event_type"].as_str().unwrap() {
            "document.uploaded" => {
                status = Some("uploaded".to_string());
                file = p["file_name"].as_str().map(String::from);
            }
            "document.processing" => status = Some("processing".into()),
            "document.processed" => {
                status = Some("processed".into());
                words = p["word_count"].as_u64();
            }
            "document.indexed" => status = Some("indexed".into()),
            "quiz.generated" => quizzes.push(p["quiz_id"].as_str().unwrap().to_string()),
            _ => {}
        }
    }
    quizzes.sort();
    (status, file, words, sorted.len() as u64, quizzes)
}

#[test]
fn state_and_state_as_of_t_match_a_replay() {
    let d = TopologyTestDriver::in_memory(
        document_lifecycle(&DocumentLifecycleConfig::default()).unwrap(),
        StreamsConfig::new("doc"),
    )
    .unwrap();
    let mut per_doc: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    let steps = [
        "document.uploaded",
        "document.processing",
        "document.processed",
        "document.indexed",
        "quiz.generated",
    ];
    let mut sends = Vec::new();
    for doc in 0..200i64 {
        let id = format!("doc{doc}");
        for (n, step) in steps.iter().enumerate().take(1 + (doc % 5) as usize) {
            let t = BASE + doc * 1_000 + n as i64 * 100;
            let event = json!({"event_id": format!("{id}-{n}"), "event_type": step, "event_timestamp": iso(t),
                               "payload": {"document_id": id, "user_id": "u", "file_name": format!("{id}.pdf"),
                                           "word_count": doc * 10, "quiz_id": format!("quiz-{id}")}});
            per_doc
                .entry(id.clone())
                .or_default()
                .push((t, event.clone()));
            let (topic, key) = if *step == "quiz.generated" {
                ("quiz-events", format!("quiz-{id}"))
            } else {
                ("document-events", id.clone())
            };
            sends.push((topic, key, event));
        }
    }
    // Out of order: every third document's events arrive reversed; every fifth event twice.
    let mut order: Vec<usize> = (0..sends.len()).collect();
    order.chunks_mut(5).enumerate().for_each(|(i, c)| {
        if i % 3 == 0 {
            c.reverse()
        }
    });
    for (n, i) in order.iter().enumerate() {
        let (topic, key, event) = &sends[*i];
        let times = if n % 5 == 0 { 2 } else { 1 };
        for _ in 0..times {
            d.pipe_raw(
                topic,
                Some(key.clone().into_bytes()),
                Some(event.to_string().into_bytes()),
                0,
                Headers::new(),
            )
            .unwrap();
        }
    }
    let states = d
        .key_value_store::<String, DocumentState>("document_state")
        .unwrap();
    let history = d
        .key_value_store::<String, Vec<HistoryEntry>>("document_history")
        .unwrap();
    for (id, events) in &per_doc {
        let s = states.get(id).unwrap().unwrap();
        let (status, file, words, count, quizzes) = replay(events, i64::MAX);
        assert_eq!(
            (
                s.status.clone(),
                s.file_name.clone(),
                s.word_count,
                s.event_count
            ),
            (status, file, words, count),
            "{id}"
        );
        assert_eq!(
            s.quiz_ids.iter().cloned().collect::<Vec<_>>(),
            quizzes,
            "{id}"
        );
        assert_eq!(s.first_event_ms, events.iter().map(|e| e.0).min());
        assert_eq!(s.last_event_ms, events.iter().map(|e| e.0).max());
        // As of every time T in the document's life, the history's fold equals the replay.
        let h = history.get(id).unwrap().unwrap();
        for (t, _) in events {
            for probe in [*t - 1, *t] {
                let as_of = state_as_of(id, &h, probe);
                let (status, file, words, count, quizzes) = replay(events, probe);
                assert_eq!(
                    (
                        as_of.status,
                        as_of.file_name,
                        as_of.word_count,
                        as_of.event_count
                    ),
                    (status, file, words, count),
                    "{id} as of {probe}"
                );
                assert_eq!(as_of.quiz_ids.into_iter().collect::<Vec<_>>(), quizzes);
            }
        }
    }
}
