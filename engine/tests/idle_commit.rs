//! A task's commit writes a RocksDB batch only when it has something to write: an idle task
//! (no state changes, no changelog offsets, the same stream time) writes nothing.

use std::collections::BTreeMap;

use eddy_engine::{
    Consumed, Grouped, InputRecord, Materialized, Produced, Serdes, StreamTask, StreamsBuilder,
    StreamsConfig, TaskId, WallClock,
};

#[test]
fn an_idle_task_commits_no_batch() {
    let b = StreamsBuilder::new();
    b.stream(&["in"], Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            "out",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    let topology = b.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new("idle");
    config.state_dir = dir.path().to_path_buf();
    let id = TaskId {
        subtopology: 0,
        partition: 0,
    };
    let mut task = StreamTask::new(&topology, id, &config, WallClock::manual(0), true).unwrap();
    let db = task.rocksdb().cloned().unwrap();
    let commit = |task: &mut StreamTask, offsets: &BTreeMap<String, i64>| {
        task.flush().unwrap();
        task.take_produced();
        task.take_changelog();
        task.commit_state(offsets).unwrap();
    };
    let none = BTreeMap::new();
    commit(&mut task, &none);
    let first = db.commits();
    commit(&mut task, &none);
    commit(&mut task, &none);
    assert_eq!(db.commits(), first, "idle commits write nothing");
    task.process(InputRecord {
        topic: "in".into(),
        partition: 0,
        offset: 0,
        key: Some(b"a".to_vec()),
        value: Some(b"x".to_vec()),
        timestamp: 5,
        headers: Default::default(),
    })
    .unwrap();
    commit(&mut task, &BTreeMap::from([("counts".to_string(), 1)]));
    assert_eq!(
        db.commits(),
        first + 1,
        "a commit with a change writes its batch"
    );
    commit(&mut task, &none);
    assert_eq!(db.commits(), first + 1);
    // A new changelog offset alone is written too.
    commit(&mut task, &BTreeMap::from([("counts".to_string(), 2)]));
    assert_eq!(db.commits(), first + 2);
    assert_eq!(task.checkpoint().unwrap().changelog_offsets["counts"], 2);
}
