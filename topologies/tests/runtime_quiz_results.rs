//! quiz-results end to end on the embedded broker under exactly-once: the generator's quiz
//! events in, every graded submission out exactly once, equal to a plain grading; and the
//! README's quiz views, SQL over the live state, equal to the same grading.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_engine::{KafkaStreams, RuntimeConfig, StreamsConfig};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use eddy_topologies::generator::{Generator, GeneratorConfig};
use eddy_topologies::quiz_results::QuizResult;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use serde_json::Value;

#[test]
fn graded_submissions_arrive_once_and_match_a_plain_grading() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("quiz-events", 3);
    broker.create_topic("quiz-results", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = StreamsConfig::new("quiz-results");
    streams
        .set("state.dir", dir.path().to_str().unwrap())
        .unwrap();
    streams
        .set("deserialization.exception.handler", "log_and_continue")
        .unwrap();
    let app = KafkaStreams::start(
        eddy_topologies::quiz_results::quiz_results(&Default::default()).unwrap(),
        RuntimeConfig::new(streams, &bootstrap),
    )
    .unwrap();

    let producer = common::keyed_producer(&bootstrap);
    let mut grading = common::QuizGrading::default();
    let records = Generator::new(GeneratorConfig {
        seed: 7,
        count: 6_000,
        ..Default::default()
    });
    for r in records.filter(|r| r.topic == "quiz-events") {
        producer
            .send(BaseRecord::to(r.topic).key(&r.key).payload(&r.value))
            .unwrap();
        producer.poll(Duration::ZERO);
        grading.see(&r.value);
    }
    let (graded, owners) = (grading.graded, grading.owners);
    producer.flush(Duration::from_secs(10)).unwrap();
    assert!(graded.len() > 100);

    let c = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == "quiz-results"
    });
    let mut seen: Vec<QuizResult> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < graded.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            seen.push(serde_json::from_slice(m.payload().unwrap_or_default()).unwrap());
        }
    }
    // A little longer: nothing more may come.
    let settle = Instant::now() + Duration::from_millis(1_000);
    while Instant::now() < settle {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            seen.push(serde_json::from_slice(m.payload().unwrap_or_default()).unwrap());
        }
    }
    views_match_the_grading(&app, &graded, &owners);
    app.close().unwrap();
    let got: BTreeMap<String, (u32, u32)> = seen
        .iter()
        .map(|r| (r.submission_id.clone(), (r.correct, r.total)))
        .collect();
    assert_eq!(seen.len(), got.len(), "each submission graded once");
    assert_eq!(got, graded);
}

/// The README's "quiz statistics for a quiz" and "a user's last 20 results" over the state,
/// against the plain grading (waiting a little: state lands in RocksDB just after the
/// transaction that wrote the results commits).
fn views_match_the_grading(
    app: &KafkaStreams,
    graded: &BTreeMap<String, (u32, u32)>,
    owners: &BTreeMap<String, (String, String)>,
) {
    let score = |(right, total): (u32, u32)| {
        if total == 0 {
            0.0
        } else {
            f64::from(right) / f64::from(total) * 100.0
        }
    };
    // Per quiz: (attempts, score sum, best); per user: their submissions.
    let mut quizzes: BTreeMap<&str, (u64, f64, f64)> = BTreeMap::new();
    let mut users: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for (submission, grade) in graded {
        let (quiz, user) = &owners[submission];
        let s = score(*grade);
        let q = quizzes.entry(quiz).or_insert((0, 0.0, 0.0));
        *q = (q.0 + 1, q.1 + s, q.2.max(s));
        users.entry(user).or_default().insert(submission, s);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = common::rows(
            app,
            "SELECT key, attempts, mean_score, best_score FROM quiz_stats ORDER BY key",
        );
        let fits = stats.len() == quizzes.len()
            && stats
                .iter()
                .zip(&quizzes)
                .all(|(row, (quiz, (n, sum, best)))| {
                    row["key"] == **quiz
                        && row["attempts"] == *n
                        && (row["mean_score"].as_f64().unwrap() - sum / *n as f64).abs() < 1e-9
                        && row["best_score"].as_f64() == Some(*best)
                });
        if fits {
            break;
        }
        assert!(Instant::now() < deadline, "quiz_stats {stats:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The README's lookup of one quiz, as written there.
    let (quiz, (n, _, best)) = quizzes.iter().next().unwrap();
    let one = common::rows(
        app,
        &format!(
            "SELECT key AS quiz, attempts, round(mean_score, 1) AS mean, best_score \
             FROM quiz_stats WHERE key = '{quiz}'"
        ),
    );
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(
        (&one[0]["attempts"], one[0]["best_score"].as_f64()),
        (&Value::from(*n), Some(*best))
    );
    // A user's last 20 results: all of them when there are 20 or fewer, else 20 of them.
    for (user, theirs) in &users {
        let got = common::rows(
            app,
            &format!(
                "SELECT submission_id, quiz_id, score, to_timestamp_millis(submitted_at_ms) AS at \
                 FROM quiz_results WHERE user_id = '{user}' ORDER BY submitted_at_ms DESC LIMIT 20"
            ),
        );
        assert_eq!(got.len(), theirs.len().min(20), "{user}: {got:?}");
        for row in &got {
            let submission = row["submission_id"].as_str().unwrap();
            assert_eq!(
                row["score"].as_f64(),
                theirs.get(submission).copied(),
                "{user}"
            );
            assert_eq!(row["quiz_id"], owners[submission].0.as_str());
        }
    }
}
