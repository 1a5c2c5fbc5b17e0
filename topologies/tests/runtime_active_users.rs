//! active-users end to end on the embedded broker under exactly-once, read through SQL: the
//! README's "active users per tenant in the latest 5-minute window" and every tenant's window
//! in `active_users_5m`, over live state, against distinct users counted plainly from the
//! generated events.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig};
use eddy_testkit::EmbeddedBroker;
use eddy_topologies::active_users::{active_users, ActiveUsersConfig};
use eddy_topologies::generator::{Generator, GeneratorConfig};
use rdkafka::producer::Producer;
use serde_json::Value;

const FIVE_MINUTES: i64 = 5 * 60_000;

#[test]
fn active_users_per_tenant_and_window_over_sql_match_a_plain_count() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("analytics-events", 3);
    broker.create_topic("analytics.active-users", 3);
    let dir = tempfile::tempdir().unwrap();
    let streams = common::exactly_once("active-users", dir.path());
    // A grace (3 h) far beyond the events' time span (about 15 min): every event counts,
    // whatever order the tasks see them in, so a plain count is the oracle.
    let config = ActiveUsersConfig {
        grace: Duration::from_secs(3 * 3_600),
        ..Default::default()
    };
    let app = KafkaStreams::start(
        active_users(&config).unwrap(),
        RuntimeConfig::new(streams, &bootstrap),
    )
    .unwrap();

    let producer = common::keyed_producer(&bootstrap);
    // (tenant, window start) → the users active in it.
    let mut oracle: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    let records = Generator::new(GeneratorConfig {
        seed: 5,
        count: 8_000,
        late_share: 0.0,
        bad_share: 0.0,
        ..Default::default()
    });
    for r in records.filter(|r| r.topic == "analytics-events") {
        common::send(&producer, &r);
        let v: Value = serde_json::from_slice(&r.value).unwrap();
        let text = |field: &str| v["payload"][field].as_str().unwrap_or_default().to_string();
        let start = r.timestamp_ms - r.timestamp_ms.rem_euclid(FIVE_MINUTES);
        oracle
            .entry((text("tenant_id"), start))
            .or_default()
            .insert(text("user_id"));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    assert!(
        oracle.len() > 5,
        "several tenants and windows: {}",
        oracle.len()
    );
    let want: Vec<(String, i64, u64)> = oracle
        .iter()
        .map(|((tenant, start), users)| (tenant.clone(), *start, users.len() as u64))
        .collect();

    // Every tenant's window, once the state has caught up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<(String, i64, u64)> = common::rows(
            &app,
            "SELECT key, CAST(window_start AS BIGINT) AS start, value FROM active_users_5m \
             ORDER BY key, start",
        )
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_string(),
                r["start"].as_i64().unwrap_or_default(),
                r["value"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "active_users_5m: {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The README's view, as written there.
    let latest = want.iter().map(|(_, start, _)| *start).max().unwrap();
    let want_latest: Vec<(String, u64)> = want
        .iter()
        .filter(|(_, start, _)| *start == latest)
        .map(|(tenant, _, n)| (tenant.clone(), *n))
        .collect();
    let got_latest: Vec<(String, u64)> = common::rows(
        &app,
        "SELECT key AS tenant, value AS active_users FROM active_users_5m \
         WHERE window_start = (SELECT max(window_start) FROM active_users_5m) ORDER BY key",
    )
    .iter()
    .map(|r| {
        (
            r["tenant"].as_str().unwrap_or_default().to_string(),
            r["active_users"].as_u64().unwrap_or_default(),
        )
    })
    .collect();
    assert_eq!(got_latest, want_latest);
    app.close().unwrap();
}
