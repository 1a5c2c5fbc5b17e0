//! Grouped aggregations, repartitioning and caching, through the test driver.

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, Grouped, Materialized, Produced, Serdes, StreamsBuilder, StreamsConfig,
};

fn counts_topology() -> StreamsBuilder {
    let b = StreamsBuilder::new();
    b.stream(
        &["words"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .group_by(
        |_, w| w.clone(),
        Grouped::named("by-word").with(Serdes::string(), Serdes::string()),
    )
    .count(Materialized::named("word-counts"))
    .to_stream()
    .to(
        "counts",
        Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
    );
    b
}

#[test]
fn group_by_repartitions_and_counts_on_rocksdb() {
    let b = counts_topology();
    let d = TopologyTestDriver::new(b.build().unwrap(), StreamsConfig::new("wc")).unwrap();
    let input = d.input_topic("words", Serdes::string(), Serdes::string());
    for (i, w) in ["a", "b", "a", "c", "a"].iter().enumerate() {
        input.pipe_str("line", w.to_string(), i as i64).unwrap();
    }
    let out = d.output_topic("counts", Serdes::string(), Serdes::nullable(Serdes::i64()));
    let got = out.read_key_values().unwrap();
    let expected: Vec<(String, Option<i64>)> = vec![
        ("a".into(), Some(1)),
        ("b".into(), Some(1)),
        ("a".into(), Some(2)),
        ("c".into(), Some(1)),
        ("a".into(), Some(3)),
    ];
    assert_eq!(got, expected);
    assert!(
        d.topic_names()
            .contains(&"wc-by-word-repartition".to_string()),
        "{:?}",
        d.topic_names()
    );
    let store = d.key_value_store::<String, i64>("word-counts").unwrap();
    assert_eq!(store.get(&"a".to_string()).unwrap(), Some(3));
    assert_eq!(store.all().unwrap().len(), 3);
    // The store equals a replay of its changelog.
    let mut replay = std::collections::BTreeMap::new();
    for rec in d.changelog("word-counts") {
        match rec.value {
            Some(v) => replay.insert(rec.key, v),
            None => replay.remove(&rec.key),
        };
    }
    let stored: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = store
        .all()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v.to_be_bytes().to_vec()))
        .collect();
    assert_eq!(replay, stored);
}

#[test]
fn the_cache_collapses_updates_between_commits() {
    let b = counts_topology();
    let d = TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("wc")).unwrap();
    d.set_commit_every_record(false);
    let input = d.input_topic("words", Serdes::string(), Serdes::string());
    for w in ["a", "a", "b", "a"] {
        input.pipe_str("line", w.to_string(), 0).unwrap();
    }
    let out = d.output_topic("counts", Serdes::string(), Serdes::nullable(Serdes::i64()));
    assert!(
        out.read_key_values().unwrap().is_empty(),
        "nothing goes downstream before the commit"
    );
    d.commit().unwrap();
    // Least recently updated first, as Kafka Streams' cache flushes.
    assert_eq!(
        out.read_key_values().unwrap(),
        vec![("b".to_string(), Some(1)), ("a".to_string(), Some(3))]
    );
    assert_eq!(
        d.changelog("word-counts").len(),
        2,
        "one changelog record per key and commit"
    );
}

#[test]
fn reduce_and_aggregate_keep_per_key_state() {
    let b = StreamsBuilder::new();
    let grouped = b
        .stream(&["scores"], Consumed::with(Serdes::string(), Serdes::i64()))
        .group_by_key(Grouped::default());
    grouped
        .reduce(
            |a, b| a.max(b),
            Materialized::named("best").without_caching(),
        )
        .to_stream()
        .to(
            "best-out",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    grouped
        .aggregate(
            || (0i64, 0i64),
            |_, v, (n, sum)| (n + 1, sum + v),
            Materialized::named("sums").with_value_serde(Serdes::json()),
        )
        .to_stream()
        .to(
            "sums-out",
            Produced::with(
                Serdes::string(),
                Serdes::nullable(Serdes::json::<(i64, i64)>()),
            ),
        );
    let d = TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("agg")).unwrap();
    let input = d.input_topic("scores", Serdes::string(), Serdes::i64());
    for (k, v) in [("u1", 50), ("u1", 80), ("u2", 10), ("u1", 70)] {
        input.pipe_str(k, v, 0).unwrap();
    }
    let best = d
        .output_topic(
            "best-out",
            Serdes::string(),
            Serdes::nullable(Serdes::i64()),
        )
        .read_values()
        .unwrap();
    assert_eq!(best, vec![Some(50), Some(80), Some(10), Some(80)]);
    let sums = d.key_value_store::<String, (i64, i64)>("sums").unwrap();
    assert_eq!(sums.get(&"u1".into()).unwrap(), Some((3, 200)));
    assert_eq!(sums.get(&"u2".into()).unwrap(), Some((1, 10)));
    // The aggregate's value serde is the JSON the Materialized asked for.
    let raw = d.changelog("sums");
    assert_eq!(raw.last().unwrap().value.as_deref(), Some(&b"[3,200]"[..]));
}

#[test]
fn a_task_reopened_on_the_same_state_dir_keeps_its_committed_rocksdb_state_only() {
    let dir = std::env::temp_dir().join(format!("eddy-reopen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = StreamsConfig::new("reopen");
    config.set("state.dir", dir.to_str().unwrap()).unwrap();
    let topology = counts_topology().build().unwrap();
    let id = eddy_engine::TaskId {
        subtopology: 1,
        partition: 0,
    };
    let input = |offset: i64| eddy_engine::InputRecord {
        topic: "reopen-by-word-repartition".into(),
        partition: 0,
        offset,
        key: Some(b"w".to_vec()),
        value: Some(b"w".to_vec()),
        timestamp: offset,
        headers: Default::default(),
    };
    {
        let mut task = eddy_engine::StreamTask::new(
            &topology,
            id,
            &config,
            eddy_engine::WallClock::manual(0),
            true,
        )
        .unwrap();
        task.process(input(0)).unwrap();
        task.process(input(1)).unwrap();
        task.flush().unwrap();
        let offsets = std::collections::BTreeMap::from([("word-counts".to_string(), 17)]);
        task.commit_state(&offsets).unwrap();
    }
    let open = || {
        eddy_engine::StreamTask::new(
            &topology,
            id,
            &config,
            eddy_engine::WallClock::manual(0),
            true,
        )
        .unwrap()
    };
    {
        // An aborted transaction: processed and flushed (its changelog records sent), never
        // committed. The task is dropped with its buffered writes.
        let mut task = open();
        let checkpoint = task.checkpoint().unwrap();
        assert_eq!(checkpoint.changelog_offsets["word-counts"], 17);
        assert_eq!(checkpoint.stream_time, Some(1));
        assert_eq!(task.stream_time(), 1, "stream time carries over a restart");
        task.process(input(5)).unwrap();
        task.process(input(6)).unwrap();
        task.flush().unwrap();
        assert_eq!(
            task.take_produced().last().unwrap().value.as_deref(),
            Some(&4i64.to_be_bytes()[..])
        );
    }
    let mut task = eddy_engine::StreamTask::new(
        &topology,
        id,
        &config,
        eddy_engine::WallClock::manual(0),
        true,
    )
    .unwrap();
    task.process(input(2)).unwrap();
    task.flush().unwrap();
    let produced = task.take_produced();
    assert_eq!(
        produced.last().unwrap().value.as_deref(),
        Some(&3i64.to_be_bytes()[..]),
        "count continues from the stored 2"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
