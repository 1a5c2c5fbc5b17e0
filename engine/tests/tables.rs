//! KTable operations through the test driver: from a topic, filter, map_values, to_stream,
//! materialization, and a stream turned into a table.

use std::collections::BTreeMap;

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

#[test]
fn a_regrouped_table_moves_rows_between_groups_and_takes_deletes_out() {
    use eddy_engine::Grouped;
    let b = StreamsBuilder::new();
    let prices = b.table(
        "prices",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::named("prices"),
    );
    // item -> "category:price"
    let by_category = prices.group_by(
        |_, v: &String| {
            let (category, price) = v.split_once(':').unwrap_or((v.as_str(), "0"));
            (category.to_string(), price.parse::<i64>().unwrap_or(0))
        },
        Grouped::named("by-category").with(Serdes::string(), Serdes::i64()),
    );
    by_category
        .count(Materialized::named("items-per-category").without_caching())
        .to_stream()
        .to(
            "counts",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    by_category
        .aggregate(
            || 0i64,
            |_, price, sum| sum + price,
            |_, price, sum| sum - price,
            Materialized::named("price-per-category")
                .with_value_serde(Serdes::i64())
                .without_caching(),
        )
        .to_stream()
        .to(
            "sums",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    let d =
        TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("regroup")).unwrap();
    let input = d.input_topic(
        "prices",
        Serdes::string(),
        Serdes::nullable(Serdes::string()),
    );
    input
        .pipe("pen".into(), Some("office:3".into()), 1)
        .unwrap();
    input
        .pipe("ink".into(), Some("office:5".into()), 2)
        .unwrap();
    input
        .pipe("pen".into(), Some("office:4".into()), 3)
        .unwrap(); // same group, new price
    input.pipe("ink".into(), Some("art:5".into()), 4).unwrap(); // moves to another group
    input.pipe("pen".into(), None, 5).unwrap(); // deleted
    let last = |topic: &str| -> BTreeMap<String, Option<i64>> {
        d.output_topic(topic, Serdes::string(), Serdes::nullable(Serdes::i64()))
            .read_key_values()
            .unwrap()
            .into_iter()
            .collect()
    };
    let counts = last("counts");
    assert_eq!(counts["office"], Some(0));
    assert_eq!(counts["art"], Some(1));
    let sums = last("sums");
    assert_eq!(sums["office"], Some(0));
    assert_eq!(sums["art"], Some(5));
    // The price change of `pen` within `office` went as one change (3, 8, then 9, never 5),
    // `ink` leaving took 5 out, and the delete of `pen` its 4.
    let all: Vec<(String, Option<i64>)> = d
        .topic_records("sums")
        .into_iter()
        .map(|r| {
            (
                String::from_utf8(r.key.unwrap()).unwrap(),
                r.value.map(|v| i64::from_be_bytes(v.try_into().unwrap())),
            )
        })
        .filter(|(k, _)| k == "office")
        .collect();
    let office: Vec<i64> = all.into_iter().filter_map(|(_, v)| v).collect();
    assert_eq!(office, vec![3, 8, 9, 4, 0]);
}
