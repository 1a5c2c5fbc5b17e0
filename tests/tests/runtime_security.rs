//! Eddy against a secured cluster: the embedded broker with a TLS listener (a test certificate
//! made by Debian's `openssl`) and SASL/PLAIN users, as a managed Kafka has them. The client
//! settings reach every client Eddy builds, and the broker refuses what Kafka refuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, KafkaStreams, Produced, RuntimeConfig, Serdes, StreamsBuilder, StreamsConfig,
};
use eddy_testkit::broker::TlsIdentity;
use eddy_testkit::{BrokerConfig, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;

const USER: &str = "eddy-app";
const PASSWORD: &str = "s3cret-pass";

/// A self-signed certificate for 127.0.0.1 (where the broker advertises itself) and its key.
fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("broker.pem"), dir.join("broker.key"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=eddy-test-broker"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (installed by .ci/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn secure_broker(dir: &Path) -> (EmbeddedBroker, PathBuf) {
    let (cert, key) = test_certificate(dir);
    let broker = EmbeddedBroker::start_with(BrokerConfig {
        tls: Some(TlsIdentity {
            certificate_chain_pem: std::fs::read_to_string(&cert).unwrap(),
            private_key_pem: std::fs::read_to_string(&key).unwrap(),
        }),
        sasl_plain_users: Some(BTreeMap::from([(USER.to_string(), PASSWORD.to_string())])),
        ..BrokerConfig::default()
    })
    .unwrap();
    (broker, cert)
}

/// The settings of a client of the secured broker, as a user would write them.
fn security(ca: &Path, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "SASL_SSL".into()),
        ("sasl.mechanisms", "PLAIN".into()),
        ("sasl.username", USER.into()),
        ("sasl.password", password.into()),
        ("ssl.ca.location", ca.display().to_string()),
    ]
}

fn client(broker: &EmbeddedBroker, settings: &[(&str, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.bootstrap());
    for (k, v) in settings {
        c.set(*k, v);
    }
    c
}

#[test]
fn a_topology_runs_exactly_once_through_tls_and_sasl_plain() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, ca) = secure_broker(dir.path());
    broker.create_topic("secure-in", 2);
    broker.create_topic("secure-out", 2);
    let settings = security(&ca, PASSWORD);

    let producer: BaseProducer = client(&broker, &settings).create().unwrap();
    for i in 0..40 {
        let (key, value) = (format!("k{}", i % 7), format!("word-{i}"));
        producer
            .send(BaseRecord::to("secure-in").key(&key).payload(&value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(20)).unwrap();

    let b = StreamsBuilder::new();
    b.stream(
        &["secure-in"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .map_values(|v: String| v.to_uppercase())
    .to(
        "secure-out",
        Produced::with(Serdes::string(), Serdes::string()),
    );
    let mut config = StreamsConfig::new("secure-app");
    config
        .set("state.dir", dir.path().join("state").to_str().unwrap())
        .unwrap();
    for (k, v) in &settings {
        // Every client Eddy builds (consumers, producer, admin) gets them.
        config.set(k, v).unwrap();
    }
    let app = KafkaStreams::start(
        b.build().unwrap(),
        RuntimeConfig::new(config, broker.bootstrap()),
    )
    .unwrap();

    let consumer: BaseConsumer = client(&broker, &settings)
        .set("group.id", "secure-check")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(&["secure-out"]).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 40 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            seen.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    app.close().unwrap();
    seen.sort();
    let mut expected: Vec<String> = (0..40).map(|i| format!("WORD-{i}")).collect();
    expected.sort();
    assert_eq!(seen, expected, "every record once, through TLS and SASL");
}

#[test]
fn the_secured_listener_refuses_what_kafka_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, ca) = secure_broker(dir.path());
    broker.create_topic("secure-probe", 1);
    let metadata = |settings: &[(&str, String)]| {
        let c: BaseConsumer = client(&broker, settings).create().unwrap();
        c.fetch_metadata(Some("secure-probe"), Duration::from_secs(3))
            .map(|m| m.topics().len())
    };
    assert_eq!(metadata(&security(&ca, PASSWORD)).unwrap(), 1);
    assert!(
        metadata(&[]).is_err(),
        "a plaintext client cannot talk to a TLS listener"
    );
    assert!(
        metadata(&security(&ca, "wrong")).is_err(),
        "a wrong password is refused"
    );
    assert!(
        metadata(&[
            ("security.protocol", "SSL".into()),
            ("ssl.ca.location", ca.display().to_string()),
        ])
        .is_err(),
        "TLS without SASL is refused before any request is served"
    );
    let other_ca = tempfile::tempdir().unwrap();
    let (untrusted, _) = test_certificate(other_ca.path());
    assert!(
        metadata(&security(&untrusted, PASSWORD)).is_err(),
        "a certificate the client does not trust fails the handshake"
    );
}
