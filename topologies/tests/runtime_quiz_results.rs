//! quiz-results end to end on the embedded broker under exactly-once: the generator's quiz
//! events in, every graded submission out exactly once, equal to a plain grading.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig, StreamsConfig};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use eddy_topologies::generator::{Generator, GeneratorConfig};
use eddy_topologies::quiz_results::QuizResult;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[test]
fn graded_submissions_arrive_once_and_match_a_plain_grading() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("quiz-events", 3);
    broker.create_topic("quiz-results", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = StreamsConfig::new("quiz-results");
    streams
        .set("state.dir", dir.path().to_str().unwrap())
        .unwrap();
    streams
        .set("deserialization.exception.handler", "log_and_continue")
        .unwrap();
    let app = KafkaStreams::start(
        eddy_topologies::quiz_results::quiz_results(&Default::default()).unwrap(),
        RuntimeConfig::new(streams, &bootstrap),
    )
    .unwrap();

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let mut grading = common::QuizGrading::default();
    let records = Generator::new(GeneratorConfig {
        seed: 7,
        count: 6_000,
        ..Default::default()
    });
    for r in records.filter(|r| r.topic == "quiz-events") {
        producer
            .send(BaseRecord::to(r.topic).key(&r.key).payload(&r.value))
            .unwrap();
        producer.poll(Duration::ZERO);
        grading.see(&r.value);
    }
    let graded = grading.graded;
    producer.flush(Duration::from_secs(10)).unwrap();
    assert!(graded.len() > 100);

    let c = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == "quiz-results"
    });
    let mut seen: Vec<QuizResult> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < graded.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            seen.push(serde_json::from_slice(m.payload().unwrap_or_default()).unwrap());
        }
    }
    // A little longer: nothing more may come.
    let settle = Instant::now() + Duration::from_millis(1_000);
    while Instant::now() < settle {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            seen.push(serde_json::from_slice(m.payload().unwrap_or_default()).unwrap());
        }
    }
    app.close().unwrap();
    let got: BTreeMap<String, (u32, u32)> = seen
        .iter()
        .map(|r| (r.submission_id.clone(), (r.correct, r.total)))
        .collect();
    assert_eq!(seen.len(), got.len(), "each submission graded once");
    assert_eq!(got, graded);
}
