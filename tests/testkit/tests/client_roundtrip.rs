//! The embedded broker driven by a real client (rdkafka / librdkafka). With
//! `EDDY_TEST_BOOTSTRAP=host:port` the same tests run against any broker, e.g. Apache Kafka
//! from docker-compose, so both can be checked to behave the same.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use eddy_testkit::EmbeddedBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

/// The broker under test: an embedded one, or the one `EDDY_TEST_BOOTSTRAP` names.
struct Target {
    bootstrap: String,
    _embedded: Option<EmbeddedBroker>,
}

fn target() -> Target {
    match std::env::var("EDDY_TEST_BOOTSTRAP") {
        Ok(bootstrap) => Target {
            bootstrap,
            _embedded: None,
        },
        Err(_) => {
            let broker = EmbeddedBroker::start().unwrap();
            Target {
                bootstrap: broker.bootstrap(),
                _embedded: Some(broker),
            }
        }
    }
}

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    )
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_with_configs(bootstrap, topic, partitions, &[]);
}

fn create_topic_with_configs(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    try_create_topic_with_configs(bootstrap, topic, partitions, configs).unwrap();
}

/// Creates `topic`, answering the broker's error for it.
fn try_create_topic_with_configs(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), rdkafka::types::RDKafkaErrorCode> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt
        .block_on(admin.create_topics(
            &[configs.iter().fold(
                NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )],
            &AdminOptions::new(),
        ))
        .unwrap();
    results
        .into_iter()
        .try_for_each(|r| r.map(drop).map_err(|(_, code)| code))
}

fn producer(bootstrap: &str, idempotent: bool) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Reads `topic` from the beginning until `expected` records arrived or time ran out.
fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(i32, i64, String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            out.push((m.partition(), m.offset(), key, value));
        }
    }
    out
}

#[test]
fn produce_and_consume_across_partitions() {
    let t = target();
    let topic = unique("roundtrip");
    create_topic(&t.bootstrap, &topic, 3);
    let p = producer(&t.bootstrap, false);
    for i in 0..300 {
        let key = format!("k{}", i % 17);
        let value = format!("v{i}");
        p.send(BaseRecord::to(&topic).key(&key).payload(&value))
            .unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let got = read_all(&t.bootstrap, &topic, 3, 300);
    assert_eq!(got.len(), 300);
    // Per partition: offsets 0.. without gaps, and each key always in one partition, in order.
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut key_partition: BTreeMap<String, i32> = BTreeMap::new();
    let mut last_of_key: BTreeMap<String, usize> = BTreeMap::new();
    for (partition, offset, key, value) in &got {
        per_partition.entry(*partition).or_default().push(*offset);
        assert_eq!(
            *key_partition.entry(key.clone()).or_insert(*partition),
            *partition
        );
        let n: usize = value[1..].parse().unwrap();
        if let Some(prev) = last_of_key.insert(key.clone(), n) {
            assert!(n > prev, "records of one key keep their order");
        }
    }
    assert_eq!(
        per_partition.len(),
        3,
        "the default partitioner spreads keys"
    );
    for offsets in per_partition.values() {
        assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
}

/// A batch larger than the topic's `max.message.bytes` (but within the client's own limit) is
/// refused with MESSAGE_TOO_LARGE and nothing of it is appended; batches sent alone before and
/// after it are delivered.
#[test]
fn a_batch_over_the_topics_max_message_bytes_is_refused() {
    let t = target();
    let topic = unique("too-large");
    create_topic_with_configs(&t.bootstrap, &topic, 1, &[("max.message.bytes", "2000")]);
    let delivered = |value: &str| {
        let (producer, rx) = reporting_producer(&t.bootstrap);
        producer
            .send(BaseRecord::to(&topic).key("k").payload(value))
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    };
    assert_eq!(delivered("small"), None);
    assert_eq!(
        delivered(&"x".repeat(5_000)),
        Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge)
    );
    assert_eq!(delivered("small again"), None);
    let got = read_all(&t.bootstrap, &topic, 1, 3);
    let values: Vec<&str> = got.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(values, ["small", "small again"]);
    assert_eq!(got[1].1, 1, "the refused batch took no offset");
}

/// A topic config that is not a value of its type is refused at creation (INVALID_CONFIG), as
/// Kafka does, and the topic is not created — rather than taken as "no limit".
#[test]
fn a_topic_config_of_the_wrong_type_is_refused_at_creation() {
    let t = target();
    for (key, value) in [
        ("max.message.bytes", "lots"),
        ("retention.ms", "1.5"),
        ("retention.ms", "-2"),
        ("cleanup.policy", "sometimes"),
        ("compression.type", "bogus"),
        ("unclean.leader.election.enable", "maybe"),
        ("min.cleanable.dirty.ratio", "2"),
        ("segment.ms", "0"),
    ] {
        let topic = unique("bad-config");
        assert_eq!(
            try_create_topic_with_configs(&t.bootstrap, &topic, 1, &[(key, value)]),
            Err(rdkafka::types::RDKafkaErrorCode::InvalidConfig),
            "{key}={value}"
        );
        assert_eq!(
            try_create_topic_with_configs(&t.bootstrap, &topic, 1, &[]),
            Ok(()),
            "the refused topic was not created"
        );
    }
    // A topic that exists is that error first, whatever configs are asked of it.
    let existing = unique("bad-config-existing");
    create_topic(&t.bootstrap, &existing, 1);
    assert_eq!(
        try_create_topic_with_configs(&t.bootstrap, &existing, 1, &[("retention.ms", "x")]),
        Err(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)
    );
}

/// A limit given with spaces around it is the limit, as Kafka trims it — not "no limit".
#[test]
fn a_max_message_bytes_with_spaces_around_it_is_the_limit() {
    let t = target();
    let topic = unique("padded-limit");
    create_topic_with_configs(&t.bootstrap, &topic, 1, &[("max.message.bytes", " 2000 ")]);
    let (producer, rx) = reporting_producer(&t.bootstrap);
    producer
        .send(BaseRecord::to(&topic).key("k").payload(&"x".repeat(5_000)))
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge)
    );
}

/// Hands each delivery's error (`None`: delivered) to a channel.
struct Reporter(
    std::sync::Mutex<std::sync::mpsc::Sender<Option<rdkafka::types::RDKafkaErrorCode>>>,
);

impl rdkafka::ClientContext for Reporter {}

/// A producer that does not retry, and the channel its delivery reports arrive on.
fn reporting_producer(
    bootstrap: &str,
) -> (
    BaseProducer<Reporter>,
    std::sync::mpsc::Receiver<Option<rdkafka::types::RDKafkaErrorCode>>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let producer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.send.max.retries", "0")
        .create_with_context(Reporter(std::sync::Mutex::new(tx)))
        .unwrap();
    (producer, rx)
}

impl rdkafka::producer::ProducerContext for Reporter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        let code = match result {
            Ok(_) => None,
            Err((rdkafka::error::KafkaError::MessageProduction(code), _)) => Some(*code),
            Err((e, _)) => panic!("unexpected delivery error: {e}"),
        };
        let _ = self.0.lock().unwrap().send(code);
    }
}

#[test]
fn an_idempotent_producer_writes_each_record_once() {
    let t = target();
    let topic = unique("idempotent");
    create_topic(&t.bootstrap, &topic, 1);
    let p = producer(&t.bootstrap, true);
    for i in 0..200 {
        p.send(BaseRecord::to(&topic).key("k").payload(&format!("v{i}")))
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let got = read_all(&t.bootstrap, &topic, 1, 200);
    let values: Vec<String> = got.into_iter().map(|r| r.3).collect();
    assert_eq!(
        values,
        (0..200).map(|i| format!("v{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn garbage_on_the_socket_closes_only_that_connection() {
    let broker = EmbeddedBroker::start().unwrap();
    let frames: Vec<Vec<u8>> = vec![
        (-5i32).to_be_bytes().to_vec(),    // negative size
        (i32::MAX).to_be_bytes().to_vec(), // absurd size
        [
            &12i32.to_be_bytes()[..],
            &[0xff, 0x7f, 0, 1, 0, 0, 0, 1][..],
        ]
        .concat(), // unknown api key
        [&100i32.to_be_bytes()[..], &[0, 3, 0, 1][..]].concat(), // truncated frame
        [&8i32.to_be_bytes()[..], &[0, 0, 0, 9, 0, 0, 0, 1][..]].concat(), // produce v9 with no body
    ];
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut random = Vec::new();
    for _ in 0..2_000 {
        let len = (seed % 64) as usize;
        let mut frame = Vec::with_capacity(len + 4);
        frame.extend_from_slice(&(len as i32).to_be_bytes());
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            frame.push(seed as u8);
        }
        random.push(frame);
    }
    for frame in frames.iter().chain(random.iter()) {
        let mut s = std::net::TcpStream::connect(broker.bootstrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = s.write_all(frame);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // The broker still serves real clients.
    let topic = unique("after-garbage");
    create_topic(&broker.bootstrap(), &topic, 1);
    let p = producer(&broker.bootstrap(), false);
    p.send(BaseRecord::to(&topic).key("k").payload("still here"))
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(read_all(&broker.bootstrap(), &topic, 1, 1).len(), 1);
}

#[test]
fn the_broker_starts_in_well_under_a_second() {
    let started = std::time::Instant::now();
    let broker = EmbeddedBroker::start().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(broker.bootstrap().starts_with("127.0.0.1:"));
}

#[test]
fn compaction_keeps_the_newest_value_per_key_at_its_offset() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let topic =
        NewTopic::new("compacted", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    for r in rt
        .block_on(admin.create_topics(&[topic], &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
    let p = producer(&bootstrap, true);
    for (k, v) in [
        ("k1", "a"),
        ("k2", "b"),
        ("k1", "c"),
        ("k3", "d"),
        ("k2", "e"),
        ("k1", "f"),
    ] {
        p.send(BaseRecord::to("compacted").key(k).payload(v))
            .unwrap();
        p.flush(Duration::from_secs(5)).unwrap(); // one batch each
    }
    assert_eq!(broker.compact_now(), 3);
    let got: Vec<(i64, String, String)> = read_all(&bootstrap, "compacted", 1, 3)
        .into_iter()
        .map(|(_, o, k, v)| (o, k, v))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "k3".into(), "d".into()),
            (4, "k2".into(), "e".into()),
            (5, "k1".into(), "f".into())
        ]
    );
    // New writes go on after the last offset.
    p.send(BaseRecord::to("compacted").key("k3").payload("g"))
        .unwrap();
    p.flush(Duration::from_secs(5)).unwrap();
    let got = read_all(&bootstrap, "compacted", 1, 4);
    assert_eq!(got.last().map(|r| r.1), Some(6));
}
