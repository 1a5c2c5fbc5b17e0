//! active-users through the test driver on RocksDB (commit every 1 000 records): analytics
//! events of 10 tenants and 5 000 users, 100 ms apart in event time, counted exactly per tenant
//! in 5-minute and 1-hour hopping windows. The figure counts only when every window's last
//! count equals a plain set-based oracle's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, Serdes, StreamsConfig};
use eddy_topologies::active_users::{active_users, ActiveUsers, ActiveUsersConfig};
use eddy_topologies::generator::rfc3339;

use crate::report::Row;

/// 2026-01-01T00:00:00Z.
const BASE: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

/// Runs `records` events and checks the counts.
pub fn run(records: u64) -> Result<Row, String> {
    let d = TopologyTestDriver::new(
        active_users(&ActiveUsersConfig::default()).map_err(|e| e.to_string())?,
        StreamsConfig::new("bench-active-users"),
    )
    .map_err(|e| e.to_string())?;
    d.set_commit_every_record(false);
    let mut oracle: BTreeMap<(&str, String, i64), BTreeSet<String>> = BTreeMap::new();
    let mut inputs = Vec::with_capacity(records as usize);
    for i in 0..records as i64 {
        let t = BASE + i * 100;
        let tenant = format!("t{}", i % 10);
        let user = format!("u{}", (i * 7_919) % 5_000);
        let event = format!(
            r#"{{"event_type":"page.view","user_id":"{user}","tenant_id":"{tenant}","timestamp":"{}"}}"#,
            rfc3339(t)
        );
        // In order: nothing is late, every window counts.
        oracle
            .entry(("5m", tenant.clone(), t - t.rem_euclid(5 * MIN)))
            .or_default()
            .insert(user.clone());
        let mut s = t - t.rem_euclid(5 * MIN) - 55 * MIN;
        while s <= t {
            oracle
                .entry(("1h", tenant.clone(), s))
                .or_default()
                .insert(user.clone());
            s += 5 * MIN;
        }
        inputs.push((user.into_bytes(), event.into_bytes()));
    }
    let started = Instant::now();
    for (i, (k, v)) in inputs.into_iter().enumerate() {
        d.pipe_raw("analytics-events", Some(k), Some(v), 0, Headers::new())
            .map_err(|e| e.to_string())?;
        if (i + 1).is_multiple_of(1_000) {
            d.commit().map_err(|e| e.to_string())?;
        }
    }
    d.commit().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let out = d
        .output_topic(
            "analytics.active-users",
            Serdes::string(),
            Serdes::json::<ActiveUsers>(),
        )
        .read_values()
        .map_err(|e| e.to_string())?;
    let mut last = BTreeMap::new();
    for r in out {
        last.insert((r.window, r.tenant_id, r.window_start_ms), r.active_users);
    }
    if last.len() != oracle.len() {
        return Err(format!(
            "{} windows counted, the oracle has {}",
            last.len(),
            oracle.len()
        ));
    }
    for ((w, tenant, start), users) in &oracle {
        let got = last.get(&(w.to_string(), tenant.clone(), *start)).copied();
        if got != Some(users.len() as u64) {
            return Err(format!(
                "{w} window {start} of {tenant}: {got:?} users, the oracle {}",
                users.len()
            ));
        }
    }
    Ok(Row::new(
        "topologies (driver)",
        "active-users, exact distinct users in 13 windows per record",
        records,
        elapsed,
    ))
}
