//! Client settings in a Streams configuration reach librdkafka: a combination librdkafka refuses
//! fails the start with its reason, for the clients the key's prefix names and no others.

use eddy_engine::{
    Consumed, KafkaStreams, Produced, RuntimeConfig, Serdes, StreamsBuilder, StreamsConfig,
};
use eddy_testkit::EmbeddedBroker;

fn start(broker: &EmbeddedBroker, settings: &[(&str, &str)]) -> eddy_engine::Result<KafkaStreams> {
    let dir = tempfile::tempdir().unwrap();
    let b = StreamsBuilder::new();
    b.stream(
        &["cfg-in"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .to(
        "cfg-out",
        Produced::with(Serdes::string(), Serdes::string()),
    );
    let mut config = StreamsConfig::new("client-config-app");
    config
        .set("state.dir", dir.path().to_str().unwrap())
        .unwrap();
    for (k, v) in settings {
        config.set(k, v).unwrap();
    }
    KafkaStreams::start(
        b.build().unwrap(),
        RuntimeConfig::new(config, broker.bootstrap()),
    )
}

#[test]
fn client_settings_reach_the_clients_their_prefix_names() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("cfg-in", 1);
    broker.create_topic("cfg-out", 1);
    // librdkafka wants max.poll.interval.ms >= session.timeout.ms (Eddy's default 10 s): the
    // consumers refuse 1 s, and so the start fails naming the key.
    for key in [
        "max.poll.interval.ms",
        "consumer.max.poll.interval.ms",
        "main.consumer.max.poll.interval.ms",
    ] {
        let err = start(&broker, &[(key, "1000")]).unwrap_err().to_string();
        assert!(err.contains("max.poll.interval.ms"), "{key}: {err}");
    }
    // ... which a session timeout below it makes valid again, and the producer, whose key
    // this is not, ignores it.
    start(
        &broker,
        &[
            ("max.poll.interval.ms", "6000"),
            ("session.timeout.ms", "6000"),
        ],
    )
    .unwrap()
    .close()
    .unwrap();
    start(&broker, &[("producer.max.poll.interval.ms", "1000")])
        .unwrap()
        .close()
        .unwrap();
    let err = start(
        &broker,
        &[
            ("sasl.mechanisms", "GSSAPI"),
            ("security.protocol", "SASL_PLAINTEXT"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("librdkafka refuses"), "{err}");
}
