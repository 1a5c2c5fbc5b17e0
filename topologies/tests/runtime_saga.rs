//! document-quiz-saga end to end on the embedded broker under exactly-once: the generator's
//! document and quiz events in (quiz events re-keyed through the repartition topic), completions
//! and compensation commands out exactly once, equal to an oracle computed from the events; and
//! the README's saga views, SQL over the live `saga_state`, equal to the same oracle.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig, StreamsConfig};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use eddy_topologies::generator::{Generator, GeneratorConfig};
use eddy_topologies::saga::{document_quiz_saga, SagaCommand, SagaCompleted, SagaConfig, SagaStep};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use serde_json::Value;

/// What the saga must do for the events given, when no deadline passes: documents whose four
/// steps all arrived complete; a failure compensates the steps before it, newest first.
#[derive(Default)]
struct Oracle {
    steps: BTreeMap<String, Vec<SagaStep>>,
    failed: BTreeMap<String, Vec<String>>,
}

impl Oracle {
    fn see(&mut self, value: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(value) else {
            return; // malformed: skipped by the topology's handler
        };
        let Some(doc) = v["payload"]["document_id"]
            .as_str()
            .filter(|d| !d.is_empty())
        else {
            return;
        };
        let event_type = v["event_type"].as_str().unwrap_or_default();
        if self.failed.contains_key(doc) {
            return; // a failed saga ignores what follows
        }
        let steps = self.steps.entry(doc.to_string()).or_default();
        if matches!(event_type, "document.error" | "quiz.failed") {
            let commands = steps
                .iter()
                .rev()
                .map(|s| s.compensation().to_string())
                .collect();
            self.failed.insert(doc.to_string(), commands);
        } else if let Some(step) = SagaStep::of_event(event_type) {
            if !steps.contains(&step) {
                steps.push(step);
            }
        }
    }

    fn completed(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|(doc, steps)| steps.len() == 4 && !self.failed.contains_key(*doc))
            .map(|(doc, _)| doc.clone())
            .collect()
    }

    fn commands(&self) -> BTreeMap<String, Vec<String>> {
        self.failed
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(d, c)| (d.clone(), c.clone()))
            .collect()
    }
}

fn read_committed(bootstrap: &str, topic: &str) -> BaseConsumer {
    consumer_from_beginning(
        bootstrap,
        &format!("verifier-{topic}"),
        "read_committed",
        |t| t == topic,
    )
}

#[test]
fn completions_and_compensations_arrive_once_and_match_the_oracle() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    for topic in [
        "document-events",
        "quiz-events",
        "saga.commands",
        "saga.completed",
    ] {
        broker.create_topic(topic, 3);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut streams = StreamsConfig::new("saga-e2e");
    streams
        .set("state.dir", dir.path().to_str().unwrap())
        .unwrap();
    streams
        .set("deserialization.exception.handler", "log_and_continue")
        .unwrap();
    // Deadlines far beyond the generated event times: what completes or fails depends only on
    // the events, not on how stream time advances per task.
    let config = SagaConfig {
        step_deadline_ms: [1_000_000_000_000; 4],
        ..Default::default()
    };
    let app = KafkaStreams::start(
        document_quiz_saga(&config).unwrap(),
        RuntimeConfig::new(streams, &bootstrap),
    )
    .unwrap();

    let producer = common::keyed_producer(&bootstrap);
    let mut oracle = Oracle::default();
    let records = Generator::new(GeneratorConfig {
        seed: 11,
        count: 6_000,
        ..Default::default()
    });
    for r in records.filter(|r| r.topic == "document-events" || r.topic == "quiz-events") {
        common::send(&producer, &r);
        oracle.see(&r.value);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let (want_completed, want_commands) = (oracle.completed(), oracle.commands());
    let want_failed: Vec<String> = oracle.failed.keys().cloned().collect();
    assert!(want_completed.len() > 20 && !want_commands.is_empty());

    let completed_consumer = read_committed(&bootstrap, "saga.completed");
    let commands_consumer = read_committed(&bootstrap, "saga.commands");
    let mut completed: Vec<String> = Vec::new();
    let mut commands: BTreeMap<String, Vec<SagaCommand>> = BTreeMap::new();
    let want_command_count: usize = want_commands.values().map(Vec::len).sum();
    let poll = |completed: &mut Vec<String>, commands: &mut BTreeMap<_, Vec<_>>| {
        if let Some(Ok(m)) = completed_consumer.poll(Duration::from_millis(20)) {
            let c: SagaCompleted = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            completed.push(c.document_id);
        }
        if let Some(Ok(m)) = commands_consumer.poll(Duration::from_millis(20)) {
            let c: SagaCommand = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            commands.entry(c.document_id.clone()).or_default().push(c);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (completed.len() < want_completed.len()
        || commands.values().map(Vec::len).sum::<usize>() < want_command_count)
        && Instant::now() < deadline
    {
        poll(&mut completed, &mut commands);
    }
    // A little longer: nothing more may come.
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        poll(&mut completed, &mut commands);
    }
    views_match_the_oracle(&app, &want_completed, &want_failed);
    app.close().unwrap();

    completed.sort();
    assert_eq!(completed, want_completed, "each saga completes once");
    let got_commands: BTreeMap<String, Vec<String>> = commands
        .into_iter()
        .map(|(doc, mut cs)| {
            cs.sort_by_key(|c| c.sequence);
            (doc, cs.into_iter().map(|c| c.command).collect())
        })
        .collect();
    assert_eq!(
        got_commands, want_commands,
        "compensations, once each, newest step first"
    );
}

/// The README's "sagas by status" and "the ones that failed" over `saga_state`, against the
/// oracle (waiting a little: state lands in RocksDB just after its transaction commits).
fn views_match_the_oracle(app: &KafkaStreams, completed: &[String], failed: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let by_status = common::rows(
            app,
            "SELECT status, count(*) AS sagas FROM saga_state GROUP BY status ORDER BY sagas DESC",
        );
        let count = |status: &str| {
            by_status
                .iter()
                .find(|r| r["status"] == status)
                .and_then(|r| r["sagas"].as_u64())
                .unwrap_or(0)
        };
        if count("completed") == completed.len() as u64 && count("failed") == failed.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "sagas by status: {by_status:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let stuck = common::rows(
        app,
        "SELECT key, status, completed_steps, failure_reason FROM saga_state \
         WHERE status NOT IN ('completed', 'running') ORDER BY key",
    );
    let keys: Vec<&str> = stuck.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, failed, "the failed sagas, by key");
    assert!(
        stuck.iter().all(|r| r["failure_reason"].is_string()),
        "each says why: {stuck:?}"
    );
}
