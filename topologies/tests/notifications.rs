//! notifications through the test driver against a plain oracle: one per completion event,
//! re-deliveries notified once, events without a user dead-lettered.

use std::collections::BTreeSet;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, Serdes, StreamsConfig};
use eddy_topologies::notifications::{notifications, Notification, NotificationsConfig};
use serde_json::json;

#[test]
fn one_notification_per_completion_event() {
    let d = TopologyTestDriver::in_memory(
        notifications(&NotificationsConfig::default()).unwrap(),
        StreamsConfig::new("n"),
    )
    .unwrap();
    let kinds = [
        "document.uploaded",
        "document.processed",
        "notes.generated",
        "audio.transcription.completed",
    ];
    let mut expected = BTreeSet::new();
    let mut sent = Vec::new();
    for i in 0..600u64 {
        let kind = kinds[(i * 7 % 4) as usize];
        let (topic, key, value) = if i % 5 == 0 {
            (
                "quiz-events",
                format!("q{i}"),
                json!({"event_id": format!("e{i}"), "event_type": "quiz.generated", "quiz_id": format!("q{i}"), "user_id": format!("u{}", i % 9)}),
            )
        } else {
            (
                "document-events",
                format!("d{i}"),
                json!({"event_id": format!("e{i}"), "event_type": kind, "payload": {"document_id": format!("d{i}"), "user_id": format!("u{}", i % 9)}}),
            )
        };
        let t = value["event_type"].as_str().unwrap().to_string();
        if matches!(
            t.as_str(),
            "document.processed" | "quiz.generated" | "audio.transcription.completed"
        ) {
            expected.insert((format!("u{}", i % 9), t, format!("e{i}")));
        }
        sent.push((topic, key, value));
    }
    // Every event once, then a third of them again (re-delivery).
    for (n, (topic, key, value)) in sent.iter().chain(sent.iter().step_by(3)).enumerate() {
        d.pipe_raw(
            topic,
            Some(key.clone().into_bytes()),
            Some(value.to_string().into_bytes()),
            n as i64,
            Headers::new(),
        )
        .unwrap();
    }
    d.pipe_raw(
        "document-events",
        Some(b"dx".to_vec()),
        Some(
            json!({"event_type": "document.processed", "document_id": "dx"})
                .to_string()
                .into_bytes(),
        ),
        0,
        Headers::new(),
    )
    .unwrap();
    let out = d
        .output_topic(
            "notifications",
            Serdes::string(),
            Serdes::json::<Notification>(),
        )
        .read_key_values()
        .unwrap();
    let got: Vec<(String, String, String)> = out
        .iter()
        .map(|(_, n)| (n.user_id.clone(), n.kind.clone(), n.source_event_id.clone()))
        .collect();
    assert_eq!(got.len(), expected.len(), "exactly one per source event");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
    assert!(out.iter().all(|(k, n)| *k == n.user_id), "keyed by user");
    let dead = d.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, "missing entity id `user_id`");
}
