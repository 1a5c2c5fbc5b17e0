//! emotion-aggregates through the test driver: one final result per window at close, equal to
//! a plain oracle; late records beyond grace dropped; the idle timeout closes the last windows.

use std::collections::BTreeMap;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, Serdes, StreamsConfig};
use eddy_topologies::emotion_aggregates::{
    emotion_aggregates, EmotionAggregate, EmotionAggregatesConfig,
};
use serde_json::json;

const BASE: i64 = 1_767_225_600_000;

fn iso(ms: i64) -> String {
    let rel = ms - BASE;
    assert!(rel >= 0);
    let s = rel / 1000;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        rel % 1000
    )
}

#[test]
fn final_window_results_match_the_oracle_and_quiet_windows_close_on_idle() {
    let config = EmotionAggregatesConfig::default(); // 1 minute, 10 s grace, 30 s idle
    let d = TopologyTestDriver::in_memory(
        emotion_aggregates(&config).unwrap(),
        StreamsConfig::new("emo"),
    )
    .unwrap();
    let emotions = ["happy", "sad", "excited"];
    let mut oracle: BTreeMap<(String, String, i64), (u64, f64)> = BTreeMap::new();
    let mut max_t = i64::MIN;
    let mut late = 0;
    for i in 0..2_000i64 {
        let child = format!("c{}", i % 4);
        let emotion = emotions[(i as usize * 7) % 3];
        let confidence = (i % 100) as f64 / 100.0;
        // 0.5 s apart; every 25th record 5–35 s late.
        let mut t = BASE + i * 500;
        if i % 25 == 0 {
            t = (t - 5_000 - (i % 7) * 5_000).max(BASE);
        }
        let event = json!({"event_type": "emotion.detected", "child_id": child, "emotion": emotion, "confidence": confidence, "occurred_at": iso(t)});
        d.pipe_raw(
            "emotion.detected",
            Some(child.clone().into_bytes()),
            Some(event.to_string().into_bytes()),
            0,
            Headers::new(),
        )
        .unwrap();
        max_t = max_t.max(t);
        let start = t - t.rem_euclid(60_000);
        if start + 60_000 > max_t - 10_000 {
            let e = oracle
                .entry((child, emotion.to_string(), start))
                .or_default();
            e.0 += 1;
            e.1 += confidence;
        } else {
            late += 1;
        }
    }
    let out = d.output_topic(
        "analytics.emotion-aggregates",
        Serdes::string(),
        Serdes::json::<EmotionAggregate>(),
    );
    let before_idle = out.read_values().unwrap();
    // Stream time stops at max_t: the windows ending after max_t - grace are still open.
    let open: Vec<_> = oracle
        .keys()
        .filter(|(_, _, s)| s + 60_000 > max_t - 10_000)
        .cloned()
        .collect();
    assert!(!open.is_empty());
    assert_eq!(before_idle.len(), oracle.len() - open.len());
    d.advance_wall_clock(29_000).unwrap();
    assert!(
        out.read_values().unwrap().is_empty(),
        "not idle for 30 s yet"
    );
    d.advance_wall_clock(31_000).unwrap();
    let after_idle = out.read_values().unwrap();
    assert_eq!(
        after_idle.len(),
        open.len(),
        "the idle timeout closes the remaining windows"
    );
    let mut got: BTreeMap<(String, String, i64), (u64, f64)> = BTreeMap::new();
    for a in before_idle.into_iter().chain(after_idle) {
        let prev = got.insert(
            (a.child_id, a.emotion, a.window_start_ms),
            (a.count, a.mean_confidence),
        );
        assert!(prev.is_none(), "each window is emitted once");
    }
    assert_eq!(got.len(), oracle.len());
    for (k, (n, sum)) in &oracle {
        let (gn, mean) = got[k];
        assert_eq!(gn, *n, "{k:?}");
        assert!((mean - sum / *n as f64).abs() < 1e-9, "{k:?}");
    }
    assert!(late > 0);
    assert_eq!(d.dropped().get("late-record").copied(), Some(late));
}
