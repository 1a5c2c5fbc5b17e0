//! `statestore.cache.max.bytes` is a total for an instance, not a limit per store: tasks that
//! share a `StateMemory` ask for a commit once their caches together are over it.

use eddy_engine::{
    Consumed, Grouped, InputRecord, Materialized, Produced, Serdes, StateMemory, StreamTask,
    StreamsBuilder, StreamsConfig, TaskId, WallClock,
};

fn counts() -> eddy_engine::Topology {
    let b = StreamsBuilder::new();
    b.stream(&["in"], Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            "out",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    b.build().unwrap()
}

/// 100 records of distinct 50-byte keys: about 6 000 dirty bytes in the task's cache.
fn fill(task: &mut StreamTask, partition: i32) {
    for i in 0..100 {
        task.process(InputRecord {
            topic: "in".into(),
            partition,
            offset: i,
            key: Some(format!("{partition}-{i:048}").into_bytes()),
            value: Some(b"x".to_vec()),
            timestamp: i,
            headers: Default::default(),
        })
        .unwrap();
    }
}

#[test]
fn tasks_of_one_instance_share_the_cache_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new("memory");
    config.state_dir = dir.path().to_path_buf();
    config.set("statestore.cache.max.bytes", "10000").unwrap();
    let topology = counts();
    let id = |partition| TaskId {
        subtopology: 0,
        partition,
    };
    let memory = StateMemory::from_config(&config);
    let open = |p| {
        StreamTask::new_in(
            &topology,
            id(p),
            &config,
            WallClock::manual(0),
            false,
            &memory,
        )
    };
    let (mut a, mut b) = (open(0).unwrap(), open(1).unwrap());
    fill(&mut a, 0);
    assert!(!a.needs_commit(), "one task's cache is under the total");
    fill(&mut b, 1);
    assert!(
        a.needs_commit() && b.needs_commit(),
        "both caches together are over the total ({} bytes used)",
        memory.cache.used()
    );
    // A commit gives the bytes back.
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(memory.cache.used(), 0);
    assert!(!a.needs_commit());

    // Tasks with budgets of their own never add up.
    let (mut c, mut d) = (
        StreamTask::new(&topology, id(0), &config, WallClock::manual(0), false).unwrap(),
        StreamTask::new(&topology, id(1), &config, WallClock::manual(0), false).unwrap(),
    );
    fill(&mut c, 0);
    fill(&mut d, 1);
    assert!(!c.needs_commit() && !d.needs_commit());
}
