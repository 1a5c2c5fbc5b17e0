//! document-quiz-saga through the test driver: every path, with the exact command sequences.

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, Serdes, StreamsConfig};
use eddy_topologies::saga::{
    document_quiz_saga, SagaCommand, SagaCompleted, SagaConfig, SagaState, SagaStatus, SagaStep,
};
use serde_json::json;

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

struct Saga {
    d: TopologyTestDriver,
    /// The saga metrics are the process's: one test at a time, so each can count its own.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Saga {
    fn new() -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let config = SagaConfig {
            step_deadline_ms: [1_000, 2_000, 3_000, 4_000],
            check_interval_ms: 100,
            ..Default::default()
        };
        let d = TopologyTestDriver::in_memory(
            document_quiz_saga(&config).unwrap(),
            StreamsConfig::new("saga"),
        )
        .unwrap();
        Self { d, _serial: serial }
    }

    /// Sends `event_type` for `doc` at `t` ms (document events keyed by document, quiz events by quiz).
    fn send(&self, doc: &str, event_type: &str, t: i64) {
        let (topic, key) = if event_type.starts_with("quiz.") {
            ("quiz-events", format!("quiz-of-{doc}"))
        } else {
            ("document-events", doc.to_string())
        };
        let value = json!({"event_id": format!("{doc}-{event_type}-{t}"), "event_type": event_type, "event_timestamp": iso(t),
                           "payload": {"document_id": doc, "user_id": "u1", "quiz_id": format!("quiz-of-{doc}"), "error": "boom"}});
        self.d
            .pipe_raw(
                topic,
                Some(key.into_bytes()),
                Some(value.to_string().into_bytes()),
                0,
                Headers::new(),
            )
            .unwrap();
    }

    /// Every command for `doc` so far.
    fn commands(&self, doc: &str) -> Vec<String> {
        self.d
            .output_topic(
                "saga.commands",
                Serdes::string(),
                Serdes::json::<SagaCommand>(),
            )
            .read_values()
            .unwrap()
            .into_iter()
            .filter(|c| c.document_id == doc)
            .map(|c| c.command)
            .collect()
    }

    /// Every completed saga so far.
    fn completed(&self) -> Vec<String> {
        self.d
            .output_topic(
                "saga.completed",
                Serdes::string(),
                Serdes::json::<SagaCompleted>(),
            )
            .read_values()
            .unwrap()
            .into_iter()
            .map(|c| c.document_id)
            .collect()
    }

    fn state(&self, doc: &str) -> SagaState {
        self.d
            .key_value_store::<String, SagaState>("saga_state")
            .unwrap()
            .get(&doc.to_string())
            .unwrap()
            .unwrap()
    }

    /// Moves stream time with an unrelated document's event.
    fn tick(&self, t: i64) {
        self.send("clock", "document.processing", t);
    }
}

#[test]
fn a_saga_that_completes_emits_saga_completed_and_no_command() {
    let s = Saga::new();
    s.send("d1", "document.uploaded", BASE);
    s.send("d1", "document.processed", BASE + 500);
    s.send("d1", "notes.generated", BASE + 1_000);
    s.send("d1", "quiz.generated", BASE + 1_500);
    s.tick(BASE + 60_000);
    assert_eq!(s.completed(), vec!["d1"]);
    assert!(s.commands("d1").is_empty());
    let st = s.state("d1");
    assert_eq!(st.status, SagaStatus::Completed);
    assert_eq!(st.completed_steps, SagaStep::ALL.to_vec());
    assert_eq!((st.current_step, st.deadline_ms), (None, None));
    assert_eq!(st.quiz_id.as_deref(), Some("quiz-of-d1"));
}

#[test]
fn each_step_timing_out_compensates_in_reverse_order() {
    let cases: [(&[&str], &[&str], SagaStep); 3] = [
        (
            &["document.uploaded"],
            &["delete_document"],
            SagaStep::Processed,
        ),
        (
            &["document.uploaded", "document.processed"],
            &["delete_processed_data", "delete_document"],
            SagaStep::NotesGenerated,
        ),
        (
            &["document.uploaded", "document.processed", "notes.generated"],
            &["delete_notes", "delete_processed_data", "delete_document"],
            SagaStep::QuizGenerated,
        ),
    ];
    for (events, expected, waiting_for) in cases {
        let s = Saga::new();
        for (i, e) in events.iter().enumerate() {
            s.send("d1", e, BASE + i as i64 * 100);
        }
        let last = BASE + (events.len() as i64 - 1) * 100;
        let deadline = last + [1_000, 2_000, 3_000, 4_000][waiting_for as usize];
        s.tick(deadline - 1);
        assert!(
            s.commands("d1").is_empty(),
            "not due yet at {waiting_for:?}"
        );
        s.tick(deadline + 200);
        assert_eq!(
            s.commands("d1"),
            expected.to_vec(),
            "timeout at {waiting_for:?}"
        );
        let st = s.state("d1");
        assert_eq!(st.status, SagaStatus::Failed);
        assert_eq!(
            st.failure_reason,
            Some(format!("timeout waiting for {waiting_for:?}"))
        );
        // A step that arrives after the timeout changes nothing.
        s.send("d1", "quiz.generated", deadline + 300);
        assert!(s.completed().is_empty());
        assert_eq!(s.commands("d1"), expected.to_vec(), "no further command");
    }
}

#[test]
fn failure_events_compensate_what_was_done() {
    let s = Saga::new();
    s.send("a", "document.uploaded", BASE);
    s.send("a", "document.error", BASE + 10);
    assert_eq!(s.commands("a"), vec!["delete_document"]);
    assert_eq!(
        s.state("a").failure_reason.as_deref(),
        Some("document.error: boom")
    );

    s.send("b", "document.uploaded", BASE);
    s.send("b", "document.processed", BASE + 10);
    s.send("b", "notes.generated", BASE + 20);
    s.send("b", "quiz.failed", BASE + 30);
    let cmds =
        s.d.output_topic(
            "saga.commands",
            Serdes::string(),
            Serdes::json::<SagaCommand>(),
        )
        .read_values()
        .unwrap();
    let b: Vec<(String, u32)> = cmds
        .into_iter()
        .filter(|c| c.document_id == "b")
        .map(|c| (c.command, c.sequence))
        .collect();
    assert_eq!(
        b,
        vec![
            ("delete_notes".into(), 0),
            ("delete_processed_data".into(), 1),
            ("delete_document".into(), 2)
        ]
    );
    assert_eq!(s.state("b").status, SagaStatus::Failed);
}

#[test]
fn duplicates_change_nothing() {
    let s = Saga::new();
    for e in [
        "document.uploaded",
        "document.uploaded",
        "document.processed",
        "document.processed",
        "notes.generated",
        "quiz.generated",
        "quiz.generated",
        "document.error",
    ] {
        s.send("d", e, BASE + 100);
    }
    assert_eq!(s.completed(), vec!["d"], "completed once");
    assert!(
        s.commands("d").is_empty(),
        "an error after completion is ignored"
    );
}

#[test]
fn out_of_order_steps_are_kept_until_the_earlier_ones_arrive() {
    let s = Saga::new();
    s.send("d", "notes.generated", BASE);
    s.send("d", "document.processed", BASE + 100);
    let st = s.state("d");
    assert_eq!(st.current_step, Some(SagaStep::Uploaded));
    assert_eq!(
        st.completed_steps,
        vec![SagaStep::Processed, SagaStep::NotesGenerated]
    );
    s.send("d", "document.uploaded", BASE + 200);
    assert_eq!(s.state("d").current_step, Some(SagaStep::QuizGenerated));
    s.send("d", "quiz.generated", BASE + 300);
    assert_eq!(s.completed(), vec!["d"]);
}

#[test]
fn a_failure_before_any_step_completes_issues_no_command() {
    let s = Saga::new();
    s.send("d", "document.error", BASE);
    assert!(s.commands("d").is_empty());
    assert_eq!(s.state("d").status, SagaStatus::Failed);
}

/// The process's saga metric `name` with `labels` (0 when it has no sample yet).
fn saga_metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = eddy_engine::render_metrics().unwrap();
    eddy_testkit::metric_sum(&text, name, labels).unwrap_or(0.0)
}

#[test]
fn the_saga_metrics_count_what_the_sagas_did() {
    let s = Saga::new();
    let outcomes = ["completed", "failed", "timed_out"];
    let count = |name: &str, outcome: Option<&str>| match outcome {
        Some(o) => saga_metric(name, &[("outcome", o)]),
        None => saga_metric(name, &[]),
    };
    let before: Vec<f64> = outcomes
        .iter()
        .map(|o| count("platform_sagas_finished_total", Some(o)))
        .collect();
    let (started, in_flight, commands, durations) = (
        count("platform_sagas_started_total", None),
        count("platform_sagas_in_flight", None),
        count("platform_saga_compensation_commands_total", None),
        count("platform_saga_duration_seconds_count", None),
    );
    s.send("m1", "document.uploaded", BASE);
    s.send("m1", "document.processed", BASE + 500);
    s.send("m1", "notes.generated", BASE + 1_000);
    s.send("m1", "quiz.generated", BASE + 1_500);
    s.send("m2", "document.uploaded", BASE + 100);
    s.send("m2", "document.processed", BASE + 200);
    s.send("m2", "document.error", BASE + 300);
    s.send("m3", "document.uploaded", BASE + 400);
    s.send("m4", "document.uploaded", BASE + 2_000);
    // m3 times out; m4, uploaded just before the clock moves, is still running.
    s.tick(BASE + 2_500);
    let docs = ["m1", "m2", "m3", "m4", "clock"];
    let states: Vec<SagaState> = docs.iter().map(|d| s.state(d)).collect();
    let outcome_of = |st: &SagaState| match st.status {
        SagaStatus::Running => None,
        SagaStatus::Completed => Some("completed"),
        SagaStatus::Failed
            if st
                .failure_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("timeout")) =>
        {
            Some("timed_out")
        }
        SagaStatus::Failed => Some("failed"),
    };
    assert_eq!(
        states.iter().map(outcome_of).collect::<Vec<_>>(),
        vec![
            Some("completed"),
            Some("failed"),
            Some("timed_out"),
            None,
            None
        ],
        "the scenario: {states:?}"
    );
    assert_eq!(count("platform_sagas_started_total", None) - started, 5.0);
    for (o, before) in outcomes.iter().zip(before) {
        assert_eq!(
            count("platform_sagas_finished_total", Some(o)) - before,
            1.0,
            "{o}"
        );
    }
    assert_eq!(count("platform_sagas_in_flight", None) - in_flight, 2.0);
    assert_eq!(
        count("platform_saga_duration_seconds_count", None) - durations,
        3.0
    );
    let issued: usize = docs.iter().map(|d| s.commands(d).len()).sum();
    assert!(issued > 0);
    assert_eq!(
        count("platform_saga_compensation_commands_total", None) - commands,
        issued as f64
    );
    // Closing the task takes its running sagas back out of the gauge.
    let Saga { d, _serial } = s;
    drop(d);
    assert_eq!(count("platform_sagas_in_flight", None), in_flight);
}
