//! plagiarism-stats through the test driver against a plain oracle: all-time and daily
//! statistics per course and assignment, notifications, and the dead-letter reasons.

use std::collections::BTreeMap;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, Serdes, StreamsConfig};
use eddy_topologies::notifications::Notification;
use eddy_topologies::plagiarism_stats::{
    plagiarism_stats, PlagiarismStatsConfig, ScoreStats, StatsSummary,
};
use serde_json::json;

const BASE: i64 = 1_767_225_600_000;
const DAY: i64 = 86_400_000;

fn iso(ms: i64) -> String {
    let rel = ms - BASE;
    assert!(rel >= 0);
    let s = rel / 1000;
    format!(
        "2026-01-{:02}T{:02}:{:02}:{:02}Z",
        1 + s / 86_400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn stats_per_course_and_assignment_match_the_oracle() {
    let d = TopologyTestDriver::in_memory(
        plagiarism_stats(&PlagiarismStatsConfig::default()).unwrap(),
        StreamsConfig::new("p"),
    )
    .unwrap();
    let pipe = |topic: &str, key: &str, v: serde_json::Value| {
        d.pipe_raw(
            topic,
            Some(key.as_bytes().to_vec()),
            Some(v.to_string().into_bytes()),
            0,
            Headers::new(),
        )
        .unwrap();
    };
    let mut x: u64 = 7;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut daily: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    let mut notified = 0;
    for i in 0..1_500i64 {
        let sub = format!("s{i}");
        let course = format!("c{}", next(3));
        let assignment = format!("a{}", next(2));
        let t = BASE + i * 300_000; // 5 minutes apart: about 5 days
        pipe(
            "paper_uploaded",
            &sub,
            json!({"event_type": "paper_uploaded", "submission_id": sub, "user_id": format!("u{}", i % 20),
              "course_id": course, "assignment_id": assignment, "occurred_at": iso(t)}),
        );
        let score = next(1001) as f64 / 10.0;
        pipe(
            "plagiarism_checked",
            &sub,
            json!({"event_type": "plagiarism_checked", "event_id": format!("e{i}"), "submission_id": sub,
              "score": score, "sources": [], "occurred_at": iso(t + 1_000)}),
        );
        let key = format!("{course}|{assignment}");
        all.entry(key.clone()).or_default().push(score);
        daily
            .entry((key, (t + 1_000) / DAY * DAY))
            .or_default()
            .push(score);
        notified += 1;
    }
    // A check for an unknown paper and one with a bad score go to the dead-letter topic.
    pipe(
        "plagiarism_checked",
        "nope",
        json!({"event_type": "plagiarism_checked", "submission_id": "nope", "score": 5, "occurred_at": iso(BASE)}),
    );
    pipe(
        "plagiarism_checked",
        "s1",
        json!({"event_type": "plagiarism_checked", "submission_id": "s1", "score": 180, "occurred_at": iso(BASE)}),
    );

    let stats = d
        .key_value_store::<String, ScoreStats>("plagiarism_stats")
        .unwrap();
    for (key, scores) in &all {
        let st = stats.get(key).unwrap().unwrap();
        let mut sorted = scores.clone();
        sorted.sort_by(f64::total_cmp);
        let s = st.summary(key, None);
        assert_eq!(s.count, scores.len() as u64);
        assert!((s.mean - scores.iter().sum::<f64>() / scores.len() as f64).abs() < 1e-9);
        assert_eq!((s.min, s.max), (sorted[0], sorted[sorted.len() - 1]));
        assert!(
            (s.p50 - nearest_rank(&sorted, 0.5)).abs() < 1e-9,
            "{key} p50"
        );
        assert!(
            (s.p95 - nearest_rank(&sorted, 0.95)).abs() < 1e-9,
            "{key} p95"
        );
    }
    let out = d
        .output_topic(
            "analytics.plagiarism-stats",
            Serdes::string(),
            Serdes::json::<StatsSummary>(),
        )
        .read_values()
        .unwrap();
    let mut last_daily: BTreeMap<(String, i64), StatsSummary> = BTreeMap::new();
    for s in out.into_iter().filter(|s| s.day_start_ms.is_some()) {
        last_daily.insert(
            (
                format!("{}|{}", s.course_id, s.assignment_id),
                s.day_start_ms.unwrap_or_default(),
            ),
            s,
        );
    }
    assert_eq!(last_daily.len(), daily.len());
    for (k, scores) in &daily {
        let s = &last_daily[k];
        assert_eq!(s.count, scores.len() as u64, "{k:?}");
        let mut sorted = scores.clone();
        sorted.sort_by(f64::total_cmp);
        assert!((s.p95 - nearest_rank(&sorted, 0.95)).abs() < 1e-9);
    }
    let notes = d
        .output_topic(
            "notifications",
            Serdes::string(),
            Serdes::json::<Notification>(),
        )
        .read_values()
        .unwrap();
    assert_eq!(notes.len(), notified);
    assert!(notes.iter().all(|n| n.kind == "plagiarism.checked"));
    let reasons: Vec<String> = d.dead_letters().into_iter().map(|r| r.error).collect();
    assert_eq!(
        reasons,
        vec![
            "no paper_uploaded for submission `nope`".to_string(),
            "score Some(180.0) is not within 0–100".to_string()
        ]
    );
}
