//! document-lifecycle end to end on the embedded broker under exactly-once, read through SQL:
//! the README's "a document's events up to time T" over live `document_history`, against the
//! generated events of that document.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig};
use eddy_testkit::EmbeddedBroker;
use eddy_topologies::document_lifecycle::{document_lifecycle, DocumentLifecycleConfig};
use eddy_topologies::generator::{Generator, GeneratorConfig};
use rdkafka::producer::Producer;
use serde_json::Value;

fn history_sql(doc: &str, until: i64) -> String {
    format!(
        "SELECT e['event']['event_type'] AS event, e['time_ms'] AS t \
         FROM (SELECT unnest(value) AS e FROM document_history WHERE key = '{doc}') \
         WHERE e['time_ms'] <= {until} ORDER BY t, event"
    )
}

/// A document's events up to `until` from SQL: (time, event type), in that order.
fn history(app: &KafkaStreams, doc: &str, until: i64) -> Vec<(i64, String)> {
    let answer = app
        .queries()
        .sql(&history_sql(doc, until))
        .unwrap_or_else(|e| panic!("{doc} up to {until}: {e}"));
    let rows: Vec<Value> = serde_json::from_str(&answer.to_json().unwrap()).unwrap();
    rows.iter()
        .map(|r| {
            (
                r["t"].as_i64().unwrap_or_default(),
                r["event"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_documents_events_up_to_a_time_over_sql_match_the_generated_events() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    for topic in ["document-events", "quiz-events", "document-state"] {
        broker.create_topic(topic, 3);
    }
    let dir = tempfile::tempdir().unwrap();
    let streams = common::exactly_once("document-lifecycle", dir.path());
    let app = KafkaStreams::start(
        document_lifecycle(&DocumentLifecycleConfig::default()).unwrap(),
        RuntimeConfig::new(streams, &bootstrap),
    )
    .unwrap();

    // The empty store already answers the README's query, with no rows: its value type cannot
    // be traced, and the topology declares its columns.
    let empty = app.queries().sql(&history_sql("doc-000001", i64::MAX));
    assert_eq!(empty.map(|a| a.rows()).map_err(|e| e.to_string()), Ok(0));

    let producer = common::keyed_producer(&bootstrap);
    // Document → its events, each once (by event id): (time, event type).
    let mut oracle: BTreeMap<String, BTreeSet<(i64, String, String)>> = BTreeMap::new();
    let records = Generator::new(GeneratorConfig {
        seed: 3,
        count: 4_000,
        late_share: 0.0,
        bad_share: 0.0,
        ..Default::default()
    });
    for r in records.filter(|r| r.topic == "document-events" || r.topic == "quiz-events") {
        common::send(&producer, &r);
        let v: Value = serde_json::from_slice(&r.value).unwrap();
        let event_type = v["event_type"].as_str().unwrap_or_default().to_string();
        let doc = v["payload"]["document_id"].as_str().unwrap_or_default();
        // Quiz events count for a document when they generate its quiz (the topology's rule).
        let counts = r.topic == "document-events" || event_type == "quiz.generated";
        if counts && !doc.is_empty() {
            let id = v["event_id"].as_str().unwrap_or_default().to_string();
            oracle
                .entry(doc.to_string())
                .or_default()
                .insert((r.timestamp_ms, event_type, id));
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let docs: Vec<(&String, Vec<(i64, String)>)> = oracle
        .iter()
        .filter(|(_, events)| events.len() >= 3)
        .take(5)
        .map(|(doc, events)| {
            let mut events: Vec<(i64, String)> =
                events.iter().map(|(t, e, _)| (*t, e.clone())).collect();
            events.sort();
            (doc, events)
        })
        .collect();
    assert!(
        docs.len() >= 3,
        "documents with a few events: {}",
        docs.len()
    );

    for (doc, events) in &docs {
        // Up to the time of its middle event: the history's first half, and the whole of it.
        let middle = events[events.len() / 2].0;
        let first_half: Vec<(i64, String)> = events
            .iter()
            .filter(|(t, _)| *t <= middle)
            .cloned()
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while history(&app, doc, i64::MAX) != *events {
            assert!(
                Instant::now() < deadline,
                "{doc}: {:?}, want {events:?}",
                history(&app, doc, i64::MAX)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        assert_eq!(
            history(&app, doc, middle),
            first_half,
            "{doc} up to {middle}"
        );
    }
    app.close().unwrap();
}
