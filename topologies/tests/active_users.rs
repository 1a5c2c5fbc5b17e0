//! active-users through the test driver: distinct users per tenant and window against a plain
//! oracle, with late events inside and beyond the grace period.

use std::collections::{BTreeMap, BTreeSet};

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, Serdes, StreamsConfig};
use eddy_topologies::active_users::{active_users, ActiveUsers, ActiveUsersConfig};
use serde_json::json;

const BASE: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

/// RFC 3339 text of `ms`, which must not be before `BASE` (2026-01-01T00:00:00Z).
fn iso(ms: i64) -> String {
    assert!(
        (BASE..BASE + 86_400_000).contains(&ms),
        "test times stay within 2026-01-01"
    );
    let s = (ms - BASE) / 1000;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

#[test]
fn distinct_users_per_tenant_and_window_match_the_oracle() {
    let d = TopologyTestDriver::in_memory(
        active_users(&ActiveUsersConfig::default()).unwrap(),
        StreamsConfig::new("au"),
    )
    .unwrap();
    let mut x: u64 = 42;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut max_t = i64::MIN;
    let mut short: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    let mut long: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    let mut late_dropped = 0;
    for i in 0..4_000i64 {
        // Mostly in order, every 10th event up to 3 minutes late.
        let mut t = BASE + i * 1_500;
        if i % 10 == 0 {
            t = (t - (next(180) as i64) * 1_000).max(BASE);
        }
        let tenant = format!("t{}", next(3));
        let user = format!("u{}", next(40));
        let event = json!({"event_type": "page.view", "user_id": user, "tenant_id": tenant, "timestamp": iso(t)});
        d.pipe_raw(
            "analytics-events",
            Some(user.clone().into_bytes()),
            Some(event.to_string().into_bytes()),
            0,
            Headers::new(),
        )
        .unwrap();
        max_t = max_t.max(t);
        let close = max_t - MIN; // grace 1 minute
        let start5 = t - t.rem_euclid(5 * MIN);
        if start5 + 5 * MIN > close {
            short
                .entry((tenant.clone(), start5))
                .or_default()
                .insert(user.clone());
        } else {
            late_dropped += 1;
        }
        let mut s = t - t.rem_euclid(5 * MIN) - 55 * MIN;
        while s <= t {
            if s + 60 * MIN > close && s >= 0 {
                long.entry((tenant.clone(), s))
                    .or_default()
                    .insert(user.clone());
            } else if s >= 0 {
                late_dropped += 1;
            }
            s += 5 * MIN;
        }
    }
    let out = d
        .output_topic(
            "analytics.active-users",
            Serdes::string(),
            Serdes::json::<ActiveUsers>(),
        )
        .read_values()
        .unwrap();
    let mut last: BTreeMap<(String, String, i64), u64> = BTreeMap::new();
    for r in out {
        last.insert(
            (r.window.clone(), r.tenant_id.clone(), r.window_start_ms),
            r.active_users,
        );
    }
    let expected: BTreeMap<(String, String, i64), u64> = short
        .iter()
        .map(|((t, s), u)| (("5m".to_string(), t.clone(), *s), u.len() as u64))
        .chain(
            long.iter()
                .map(|((t, s), u)| (("1h".to_string(), t.clone(), *s), u.len() as u64)),
        )
        .collect();
    assert_eq!(last.len(), expected.len());
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| last.get(*k) != Some(v))
        .take(3)
        .collect();
    assert!(
        wrong.is_empty(),
        "latest count per window differs: {wrong:?}"
    );
    assert!(late_dropped > 0, "the data has records beyond grace");
    assert_eq!(
        d.dropped().get("late-record").copied().unwrap_or(0),
        late_dropped
    );
}

/// A window that closed before a restart stays closed after it: the reopened task resumes from
/// the committed stream time, so a late user is dropped, not counted into the closed window.
#[test]
fn a_window_closed_before_a_restart_stays_closed_after_it() {
    use eddy_engine::{InputRecord, StreamTask, TaskId, WallClock};

    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new("au-restart");
    config.state_dir = dir.path().to_path_buf();
    let topology = active_users(&ActiveUsersConfig::default()).unwrap();
    // The sub-topology after the repartition by tenant: its input is (tenant, user).
    let id = TaskId {
        subtopology: 1,
        partition: 0,
    };
    let open = || StreamTask::new(&topology, id, &config, WallClock::manual(0), true).unwrap();
    let topic = open().input_topics().remove(0);
    let input = |offset: i64, user: &str, ts: i64| InputRecord {
        topic: topic.clone(),
        partition: 0,
        offset,
        key: Some(b"t1".to_vec()),
        value: Some(user.as_bytes().to_vec()),
        timestamp: ts,
        headers: Headers::new(),
    };
    let rows = |task: &mut StreamTask| -> Vec<ActiveUsers> {
        task.take_produced()
            .into_iter()
            .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
            .collect()
    };
    let mut task = open();
    task.process(input(0, "u1", BASE)).unwrap();
    // 9 minutes: the 5-minute window [0, 5) closed at 6 minutes (grace 1 minute).
    task.process(input(1, "u2", BASE + 9 * MIN)).unwrap();
    task.flush().unwrap();
    task.commit_state(&BTreeMap::new()).unwrap();
    let before = rows(&mut task);
    assert!(before
        .iter()
        .any(|r| r.window == "5m" && r.window_start_ms == BASE && r.active_users == 1));
    drop(task);

    let mut task = open();
    task.process(input(2, "u3", BASE + MIN)).unwrap();
    task.flush().unwrap();
    let after = rows(&mut task);
    assert!(
        !after
            .iter()
            .any(|r| r.window == "5m" && r.window_start_ms == BASE),
        "the closed window changed after the restart: {after:?}"
    );
    // Dropped for [0, 5) and for the hour window [-55, 5), both closed at 6 minutes.
    assert_eq!(task.dropped().get("late-record"), Some(&2));
}
