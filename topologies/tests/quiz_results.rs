//! quiz-results through the test driver, against an oracle written plainly here: thousands of
//! seeded events with submissions ahead of their quiz, re-deliveries and bad records.

use std::collections::{BTreeMap, HashSet};

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Headers, Serdes, StreamsConfig};
use eddy_topologies::quiz_results::{
    quiz_results, QuizResult, QuizResultsConfig, QuizStats, UserQuizHistory,
};
use serde_json::json;

/// A small deterministic generator (xorshift), so the test needs no engine code to make data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 2026-01-01T00:00:00Z, the origin of [`iso`].
const BASE_MS: i64 = 1_767_225_600_000;

fn iso(ms: i64) -> String {
    let secs = ms / 1000;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    )
}

#[derive(Default)]
struct Oracle {
    quizzes: BTreeMap<String, BTreeMap<String, String>>,
    results: BTreeMap<String, (String, String, u32, u32, i64)>,
    waiting: BTreeMap<String, Vec<(String, String, BTreeMap<String, String>, i64)>>,
}

impl Oracle {
    fn grade(
        &mut self,
        quiz: &str,
        sub: &str,
        user: &str,
        answers: &BTreeMap<String, String>,
        t: i64,
    ) {
        let correct = &self.quizzes[quiz];
        let right = correct
            .iter()
            .filter(|(q, a)| answers.get(*q) == Some(*a))
            .count() as u32;
        self.results.entry(sub.to_string()).or_insert((
            quiz.to_string(),
            user.to_string(),
            right,
            correct.len() as u32,
            t,
        ));
    }
}

#[test]
fn graded_results_and_views_match_the_oracle() {
    let config = QuizResultsConfig {
        max_wait_ms: i64::MAX / 4,
        ..Default::default()
    };
    let d =
        TopologyTestDriver::in_memory(quiz_results(&config).unwrap(), StreamsConfig::new("quiz"))
            .unwrap();
    let mut rng = Rng(0x5eed);
    let mut oracle = Oracle::default();
    let mut bad = 0;
    let mut sent_submissions: Vec<serde_json::Value> = Vec::new();
    let send = |key: &str, value: Vec<u8>| {
        d.pipe_raw(
            "quiz-events",
            Some(key.as_bytes().to_vec()),
            Some(value),
            0,
            Headers::new(),
        )
        .unwrap();
    };
    for i in 0..3_000i64 {
        let t = 1_000 * i;
        match rng.below(10) {
            0..=2 => {
                let quiz = format!("q{}", rng.below(200));
                if oracle.quizzes.contains_key(&quiz) {
                    continue;
                }
                let correct: BTreeMap<String, String> = (0..1 + rng.below(5))
                    .map(|n| {
                        (
                            format!("{n}"),
                            ["a", "b", "c"][rng.below(3) as usize].to_string(),
                        )
                    })
                    .collect();
                let questions: Vec<_> = correct
                    .iter()
                    .map(|(q, a)| json!({"question_id": q, "correct_answer": a}))
                    .collect();
                let event = json!({"event_id": format!("e{i}"), "event_type": "quiz.generated", "event_timestamp": iso(t), "event_version": "1.0",
                                   "payload": {"quiz_id": quiz, "questions": questions}});
                send(&quiz, event.to_string().into_bytes());
                oracle.quizzes.insert(quiz.clone(), correct);
                for (sub, user, answers, st) in oracle.waiting.remove(&quiz).unwrap_or_default() {
                    oracle.grade(&quiz, &sub, &user, &answers, st);
                }
            }
            3..=7 => {
                let quiz = format!("q{}", rng.below(200));
                let sub = format!("s{i}");
                let user = format!("u{}", rng.below(50));
                let answers: BTreeMap<String, String> = (0..5)
                    .map(|n| {
                        (
                            format!("{n}"),
                            ["a", "b", "c"][rng.below(3) as usize].to_string(),
                        )
                    })
                    .collect();
                // Flat envelope with the answers as an object.
                let event = json!({"event_type": "quiz.submitted", "quiz_id": quiz, "submission_id": sub, "user_id": user,
                                   "answers": answers, "occurred_at": iso(t)});
                send(&quiz, event.to_string().into_bytes());
                sent_submissions.push(event);
                if oracle.quizzes.contains_key(&quiz) {
                    oracle.grade(&quiz, &sub, &user, &answers, BASE_MS + t);
                } else {
                    oracle
                        .waiting
                        .entry(quiz)
                        .or_default()
                        .push((sub, user, answers, BASE_MS + t));
                }
            }
            8 => {
                // A re-delivered submission changes nothing.
                if !sent_submissions.is_empty() {
                    let e =
                        sent_submissions[rng.below(sent_submissions.len() as u64) as usize].clone();
                    send(e["quiz_id"].as_str().unwrap(), e.to_string().into_bytes());
                }
            }
            _ => {
                bad += 1;
                let value = match rng.below(3) {
                    0 => b"{\"event_type\": \"quiz.submitted\", broken".to_vec(),
                    1 => json!({"event_type": "quiz.submitted", "submission_id": "x"})
                        .to_string()
                        .into_bytes(),
                    _ => json!({"event_type": "quiz.exploded", "quiz_id": "q1"})
                        .to_string()
                        .into_bytes(),
                };
                send("q1", value);
            }
        }
    }

    let results = d
        .key_value_store::<String, QuizResult>("quiz_results")
        .unwrap();
    let got: BTreeMap<String, (String, String, u32, u32, i64)> = results
        .all()
        .unwrap()
        .into_iter()
        .map(|(k, r)| {
            (
                k,
                (r.quiz_id, r.user_id, r.correct, r.total, r.submitted_at_ms),
            )
        })
        .collect();
    assert_eq!(got.len(), oracle.results.len(), "graded submissions");
    let differing: Vec<_> = got
        .iter()
        .filter(|(k, v)| oracle.results.get(*k) != Some(v))
        .take(3)
        .collect();
    assert!(
        differing.is_empty(),
        "results differ from the oracle, e.g. {differing:?}"
    );
    for (_, r) in results.all().unwrap() {
        assert!((r.score - r.correct as f64 * 100.0 / r.total as f64).abs() < 1e-9);
    }
    // Every graded submission reached the output topic exactly once.
    let out = d
        .output_topic(
            "quiz-results",
            Serdes::string(),
            Serdes::json::<QuizResult>(),
        )
        .read_values()
        .unwrap();
    let ids: HashSet<String> = out.iter().map(|r| r.submission_id.clone()).collect();
    assert_eq!(
        (out.len(), ids.len()),
        (oracle.results.len(), oracle.results.len())
    );

    // quiz_stats and user_quiz_history from the oracle's results.
    let stats = d
        .key_value_store::<String, QuizStats>("quiz_stats")
        .unwrap();
    let mut by_quiz: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_user: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for (sub, (quiz, user, right, total, t)) in &oracle.results {
        by_quiz
            .entry(quiz.clone())
            .or_default()
            .push(*right as f64 * 100.0 / *total as f64);
        by_user
            .entry(user.clone())
            .or_default()
            .push((*t, sub.clone()));
    }
    for (quiz, scores) in &by_quiz {
        let s = stats.get(quiz).unwrap().unwrap();
        assert_eq!(s.attempts, scores.len() as u64);
        assert!((s.mean_score - scores.iter().sum::<f64>() / scores.len() as f64).abs() < 1e-6);
        assert!((s.best_score - scores.iter().cloned().fold(0.0, f64::max)).abs() < 1e-9);
    }
    let history = d
        .key_value_store::<String, UserQuizHistory>("user_quiz_history")
        .unwrap();
    for (user, mut subs) in by_user {
        subs.sort_by_key(|s| std::cmp::Reverse(s.0));
        subs.truncate(20);
        let h = history.get(&user).unwrap().unwrap();
        let got: Vec<i64> = h.results.iter().map(|r| r.submitted_at_ms).collect();
        let want: Vec<i64> = subs.iter().map(|(t, _)| *t).collect();
        assert_eq!(got, want, "history of {user}, newest first");
    }
    // Submissions whose quiz never came still wait; nothing was graded wrong.
    let pending: usize = oracle.waiting.values().map(Vec::len).sum();
    assert!(pending > 0, "the generator leaves some quizzes out");

    // Bad records reached the dead-letter path with their reasons.
    let dead = d.dead_letters();
    assert_eq!(dead.len(), bad);
    assert!(dead.iter().any(|r| r.error.starts_with("undecodable")));
    assert!(dead
        .iter()
        .any(|r| r.error == "missing entity id `quiz_id`"));
    assert!(dead
        .iter()
        .any(|r| r.error == "unknown event_type `quiz.exploded`"));
}

#[test]
fn a_submission_whose_quiz_never_comes_goes_to_the_dead_letter_topic() {
    let config = QuizResultsConfig {
        max_wait_ms: 60_000,
        ..Default::default()
    };
    let d =
        TopologyTestDriver::in_memory(quiz_results(&config).unwrap(), StreamsConfig::new("quiz"))
            .unwrap();
    let send = |v: serde_json::Value| {
        let key = v["quiz_id"].as_str().unwrap().to_string();
        d.pipe_raw(
            "quiz-events",
            Some(key.into_bytes()),
            Some(v.to_string().into_bytes()),
            0,
            Headers::new(),
        )
        .unwrap();
    };
    send(
        json!({"event_type": "quiz.submitted", "quiz_id": "lost", "submission_id": "s1", "user_id": "u", "answers": {}, "occurred_at": iso(0)}),
    );
    send(json!({"event_type": "quiz.requested", "quiz_id": "other", "occurred_at": iso(30_000)}));
    assert!(d.dead_letters().is_empty(), "still within the wait");
    send(json!({"event_type": "quiz.requested", "quiz_id": "other", "occurred_at": iso(61_000)}));
    let dead = d.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, "quiz `lost` did not arrive within 60000 ms");
    // A late quiz does not resurrect it.
    send(
        json!({"event_type": "quiz.generated", "quiz_id": "lost", "questions": [], "occurred_at": iso(62_000)}),
    );
    assert!(d
        .output_topic(
            "quiz-results",
            Serdes::string(),
            Serdes::json::<QuizResult>()
        )
        .read_values()
        .unwrap()
        .is_empty());
}
