//! Emit-on-close aggregations across a restart: a task reopened on its state directory (as after
//! a crash or a move) neither emits a closed window again nor counts a late record into one.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_engine::{
    Consumed, EmitStrategy, Grouped, InputRecord, KGroupedStream, KTable, Materialized, Produced,
    Serdes, SessionWindows, StreamTask, StreamsBuilder, StreamsConfig, TaskId, TimeWindows,
    WallClock, Windowed,
};

fn grouped(b: &StreamsBuilder) -> KGroupedStream<String, String> {
    b.stream(&["in"], Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
}

fn to_out(table: KTable<Windowed<String>, i64>) {
    table.to_stream().to(
        "out",
        Produced::with(
            Serdes::windowed(Serdes::string()),
            Serdes::nullable(Serdes::i64()),
        ),
    );
}

/// Runs `first`, commits, drops the task, reopens it on the same state directory and runs
/// `second`. Returns the emitted counts, each as `(key, window start, count)`.
fn across_restart(
    b: StreamsBuilder,
    first: &[(&str, i64)],
    second: &[(&str, i64)],
) -> Vec<(String, i64, i64)> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new("restart");
    config
        .set("state.dir", dir.path().to_str().unwrap())
        .unwrap();
    let topology = b.build().unwrap();
    let id = TaskId {
        subtopology: 0,
        partition: 0,
    };
    let input = |offset: i64, key: &str, ts: i64| InputRecord {
        topic: "in".into(),
        partition: 0,
        offset,
        key: Some(key.as_bytes().to_vec()),
        value: Some(b"x".to_vec()),
        timestamp: ts,
        headers: Default::default(),
    };
    let key_serde = Serdes::windowed(Serdes::string());
    let mut emitted = Vec::new();
    let mut offset = 0;
    for (round, records) in [first, second].into_iter().enumerate() {
        let mut task = StreamTask::new(&topology, id, &config, WallClock::manual(0), true).unwrap();
        for (key, ts) in records {
            task.process(input(offset, key, *ts)).unwrap();
            offset += 1;
        }
        task.flush().unwrap();
        if round == 0 {
            task.commit_state(&BTreeMap::new()).unwrap();
        }
        for r in task.take_produced() {
            let w = key_serde.deserialize(r.key.as_deref().unwrap()).unwrap();
            let count = i64::from_be_bytes(r.value.unwrap().try_into().unwrap());
            emitted.push((w.key, w.start, count));
        }
    }
    emitted
}

#[test]
fn a_reopened_time_window_count_emits_each_window_once() {
    let b = StreamsBuilder::new();
    let w = TimeWindows::of_size_and_grace(Duration::from_millis(10), Duration::ZERO);
    to_out(
        grouped(&b)
            .windowed_by(w)
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::named("counts")),
    );
    let emitted = across_restart(
        b,
        &[("a", 1), ("a", 5), ("a", 12)],
        // 13 must not emit [0, 10) again; 3 is late for it; 25 closes [10, 20).
        &[("a", 13), ("a", 3), ("a", 25)],
    );
    assert_eq!(
        emitted,
        vec![("a".to_string(), 0, 2), ("a".to_string(), 10, 2)]
    );
}

#[test]
fn a_reopened_session_count_emits_each_session_once() {
    let b = StreamsBuilder::new();
    to_out(
        grouped(&b)
            .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(
                Duration::from_millis(5),
                Duration::ZERO,
            ))
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::named("sessions")),
    );
    let emitted = across_restart(
        b,
        &[("a", 1), ("a", 3), ("a", 20)],
        &[("a", 21), ("a", 2), ("a", 40)],
    );
    assert_eq!(
        emitted,
        vec![("a".to_string(), 1, 2), ("a".to_string(), 20, 2)]
    );
}
