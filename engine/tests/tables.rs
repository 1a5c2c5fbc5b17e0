//! KTable operations through the test driver: from a topic, filter, map_values, to_stream,
//! materialization, and a stream turned into a table.

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Consumed, Materialized, Produced, Serdes, StreamsBuilder, StreamsConfig};

fn nullable_out() -> Produced<String, Option<i64>> {
    Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64()))
}

#[test]
fn table_filter_map_values_and_to_stream() {
    let b = StreamsBuilder::new();
    let scores = b.table(
        "scores",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::named("scores"),
    );
    scores
        .filter(|_, s| *s >= 50)
        .to_stream()
        .to("passed", nullable_out());
    scores
        .filter_not(|_, s| *s >= 50)
        .to_stream()
        .to("failed", nullable_out());
    scores
        .map_values(|_, s| s * 10)
        .materialize(Materialized::named("scaled"))
        .to_stream()
        .to("scaled", nullable_out());
    let d = TopologyTestDriver::new(b.build().unwrap(), StreamsConfig::new("t")).unwrap();
    let input = d.input_topic("scores", Serdes::string(), Serdes::nullable(Serdes::i64()));
    input.pipe_str("ann", Some(70), 0).unwrap();
    input.pipe_str("bob", Some(20), 1).unwrap();
    input.pipe_str("ann", Some(40), 2).unwrap();
    input.pipe_str("bob", None, 3).unwrap();
    let read = |t: &str| {
        d.output_topic(t, Serdes::string(), Serdes::nullable(Serdes::i64()))
            .read_key_values()
            .unwrap()
    };
    let kv = |k: &str, v: Option<i64>| (k.to_string(), v);
    // A row that stops passing the filter becomes a delete downstream.
    assert_eq!(
        read("passed"),
        vec![
            kv("ann", Some(70)),
            kv("bob", None),
            kv("ann", None),
            kv("bob", None)
        ]
    );
    assert_eq!(
        read("failed"),
        vec![
            kv("ann", None),
            kv("bob", Some(20)),
            kv("ann", Some(40)),
            kv("bob", None)
        ]
    );
    assert_eq!(
        read("scaled"),
        vec![
            kv("ann", Some(700)),
            kv("bob", Some(200)),
            kv("ann", Some(400)),
            kv("bob", None)
        ]
    );
    let scaled = d.key_value_store::<String, i64>("scaled").unwrap();
    assert_eq!(scaled.all().unwrap(), vec![("ann".to_string(), 400)]);
    let source = d.key_value_store::<String, i64>("scores").unwrap();
    assert_eq!(
        source.get(&"bob".into()).unwrap(),
        None,
        "a tombstone deletes the row"
    );
}

#[test]
fn a_stream_becomes_a_table_and_repartition_is_explicit() {
    let b = StreamsBuilder::new();
    let latest = b
        .stream(
            &["logins"],
            Consumed::with(Serdes::string(), Serdes::string()),
        )
        .map(|user, device| (device, user))
        .repartition("by-device")
        .to_table(Materialized::named("last-user-per-device"));
    latest.to_stream().to(
        "devices",
        Produced::with(Serdes::string(), Serdes::nullable(Serdes::string())),
    );
    let topology = b.build().unwrap();
    assert_eq!(topology.subtopologies().len(), 2);
    let d = TopologyTestDriver::in_memory(topology, StreamsConfig::new("t")).unwrap();
    let input = d.input_topic("logins", Serdes::string(), Serdes::string());
    input.pipe_str("ann", "phone".into(), 0).unwrap();
    input.pipe_str("bob", "phone".into(), 1).unwrap();
    input.pipe_str("ann", "laptop".into(), 2).unwrap();
    let store = d
        .key_value_store::<String, String>("last-user-per-device")
        .unwrap();
    // String keys sort as strings in the store (the default key serde is plain UTF-8).
    assert_eq!(
        store.all().unwrap(),
        vec![
            ("laptop".into(), "ann".into()),
            ("phone".into(), "bob".into())
        ]
    );
    assert!(d
        .topic_names()
        .contains(&"t-by-device-repartition".to_string()));
}
