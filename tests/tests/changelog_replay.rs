//! Every store of a topology equals a replay of its changelog, on RocksDB, after a mixed
//! workload of puts, overwrites, deletes and window expiry.

use std::time::Duration;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsConfig, TimeWindows,
};
use eddy_tests::replay;

#[test]
fn stores_equal_the_replay_of_their_changelogs() {
    let b = StreamsBuilder::new();
    let events = b.stream(
        &["events"],
        Consumed::with(Serdes::string(), Serdes::string()),
    );
    events
        .group_by_key(Grouped::default())
        .count(Materialized::named("totals"))
        .to_stream()
        .to(
            "totals",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    events
        .group_by_key(Grouped::default())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
            100,
        )))
        .count(Materialized::named("per-window").with_retention(Duration::from_millis(300)));
    b.table(
        "profiles",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::named("profiles"),
    );
    let d = TopologyTestDriver::new(b.build().unwrap(), StreamsConfig::new("replay")).unwrap();
    let input = d.input_topic("events", Serdes::string(), Serdes::string());
    let profiles = d.input_topic(
        "profiles",
        Serdes::string(),
        Serdes::nullable(Serdes::string()),
    );
    for i in 0..2_000i64 {
        input.pipe(format!("k{}", i % 37), "e".into(), i).unwrap();
        if i % 3 == 0 {
            let value = (i % 2 == 0).then(|| format!("v{i}"));
            profiles.pipe(format!("p{}", i % 11), value, i).unwrap();
        }
    }
    let totals = d.key_value_store::<String, i64>("totals").unwrap();
    let stored: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = totals
        .all()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v.to_be_bytes().to_vec()))
        .collect();
    assert_eq!(replay(&d.changelog("totals")), stored);
    let profiles_store = d.key_value_store::<String, String>("profiles").unwrap();
    let stored: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = profiles_store
        .all()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
        .collect();
    assert_eq!(replay(&d.changelog("profiles")), stored);
    assert!(stored.len() < 11, "tombstones removed some profiles");
    // Windows: the live part of the store is a suffix of the replayed changelog.
    let windows = d.window_store::<String, i64>("per-window").unwrap();
    let live = windows.all().unwrap();
    assert!(!live.is_empty());
    let replayed = replay(&d.changelog("per-window"));
    assert!(
        replayed.len() >= live.len(),
        "the changelog holds every window, expired ones too"
    );
    assert_eq!(
        live.iter().map(|(_, _, n)| n).sum::<i64>(),
        300,
        "the 3 live windows of 100 ms hold 300 records"
    );
}
