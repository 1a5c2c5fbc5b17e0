//! Fault injection through rdkafka: a paused broker answers nothing until resumed; dropped
//! connections are re-made; delayed and failed request kinds are retried by the client; a rejected
//! topic appends nothing.

use std::time::{Duration, Instant};

use eddy_testkit::EmbeddedBroker;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap()
}

fn read_values(bootstrap: &str, topic: &str, expected: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("faults-{}", std::process::id()))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    out
}

#[test]
fn a_paused_broker_answers_after_resume() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("paused", 1);
    let p = producer(&broker.bootstrap());
    p.send(BaseRecord::to("paused").key("k").payload("before"))
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    broker.pause();
    p.send(BaseRecord::to("paused").key("k").payload("during"))
        .unwrap();
    assert!(
        p.flush(Duration::from_millis(800)).is_err(),
        "nothing is acknowledged while paused"
    );
    broker.resume();
    p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(
        read_values(&broker.bootstrap(), "paused", 2),
        vec!["before", "during"]
    );
}

#[test]
fn dropped_connections_and_failed_produces_are_retried_without_duplicates() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("flaky", 1);
    let p = producer(&broker.bootstrap());
    for i in 0..50 {
        p.send(BaseRecord::to("flaky").key("k").payload(&format!("v{i}")))
            .unwrap();
        if i == 10 {
            broker.drop_connections();
        }
        if i == 20 {
            // A retriable error for the next two produce requests.
            broker.fail_requests(
                ApiKey::Produce as i16,
                ResponseError::NotLeaderOrFollower.code(),
                Some(2),
            );
        }
        p.poll(Duration::from_millis(5));
    }
    p.flush(Duration::from_secs(20)).unwrap();
    let values = read_values(&broker.bootstrap(), "flaky", 50);
    assert_eq!(values, (0..50).map(|i| format!("v{i}")).collect::<Vec<_>>());
}

#[test]
fn a_delayed_request_kind_slows_only_that_kind() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("slow", 1);
    broker.delay_requests(ApiKey::Produce as i16, Duration::from_millis(700));
    let p = producer(&broker.bootstrap());
    let started = Instant::now();
    p.send(BaseRecord::to("slow").key("k").payload("x"))
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(700));
    broker.clear_faults();
    assert_eq!(read_values(&broker.bootstrap(), "slow", 1), vec!["x"]);
}

#[test]
fn a_rejected_topic_appends_nothing_while_other_topics_are_written() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("app-store-changelog", 1);
    broker.create_topic("outputs", 1);
    broker.reject_produce_to("-changelog", ResponseError::InvalidRecord.code(), 1);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let delivered = |topic: &str| {
        p.send(BaseRecord::to(topic).key("k").payload("v")).unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        broker.partition_state(topic, 0).unwrap().0
    };
    assert_eq!(delivered("outputs"), 1, "other topics are written");
    assert_eq!(
        delivered("app-store-changelog"),
        0,
        "the rejected batch is not appended"
    );
    assert_eq!(
        delivered("app-store-changelog"),
        1,
        "the rejection is used up"
    );
}
