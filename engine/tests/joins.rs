//! Joins: stream–table, table–table and windowed stream–stream, with null sides and window
//! edges, through the test driver.

use std::time::Duration;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, JoinWindows, Materialized, Produced, Serdes, StreamsBuilder, StreamsConfig,
};

fn strings() -> Consumed<String, String> {
    Consumed::with(Serdes::string(), Serdes::string())
}

fn out_strings() -> Produced<String, String> {
    Produced::with(Serdes::string(), Serdes::string())
}

fn driver(b: &StreamsBuilder) -> TopologyTestDriver {
    TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("j")).unwrap()
}

#[test]
fn stream_table_inner_and_left_joins() {
    let b = StreamsBuilder::new();
    let users = b.table("users", strings(), Materialized::named("users"));
    let clicks = b.stream(&["clicks"], strings());
    clicks
        .join_table(&users, |page, name| format!("{name}:{page}"))
        .to("inner", out_strings());
    clicks
        .left_join_table(&users, |page, name| {
            format!("{}:{page}", name.map_or("?", |n| n.as_str()))
        })
        .to("left", out_strings());
    let d = driver(&b);
    let users_in = d.input_topic(
        "users",
        Serdes::string(),
        Serdes::nullable(Serdes::string()),
    );
    let clicks_in = d.input_topic("clicks", Serdes::string(), Serdes::string());
    clicks_in.pipe_str("u1", "/home".into(), 1).unwrap();
    users_in.pipe_str("u1", Some("ann".into()), 2).unwrap();
    clicks_in.pipe_str("u1", "/quiz".into(), 3).unwrap();
    users_in.pipe_str("u1", None, 4).unwrap();
    clicks_in.pipe_str("u1", "/bye".into(), 5).unwrap();
    let read = |t: &str| {
        d.output_topic(t, Serdes::string(), Serdes::string())
            .read_values()
            .unwrap()
    };
    assert_eq!(read("inner"), vec!["ann:/quiz"]);
    assert_eq!(read("left"), vec!["?:/home", "ann:/quiz", "?:/bye"]);
}

#[test]
fn stream_table_join_after_a_key_change_repartitions() {
    let b = StreamsBuilder::new();
    let quizzes = b.table("quizzes", strings(), Materialized::named("quizzes"));
    b.stream(&["submissions"], strings())
        // value "quiz-id|answer": re-key by the quiz.
        .select_key(|_, v| v.split('|').next().unwrap_or_default().to_string())
        .join_table(&quizzes, |sub, quiz| format!("{sub} vs {quiz}"))
        .to("graded", Produced::with(Serdes::string(), Serdes::string()));
    let topology = b.build().unwrap();
    assert_eq!(topology.subtopologies().len(), 2);
    let d = TopologyTestDriver::in_memory(topology, StreamsConfig::new("j")).unwrap();
    d.input_topic(
        "quizzes",
        Serdes::string(),
        Serdes::nullable(Serdes::string()),
    )
    .pipe_str("q1", Some("Q".into()), 0)
    .unwrap();
    d.input_topic("submissions", Serdes::string(), Serdes::string())
        .pipe_str("s1", "q1|A".into(), 1)
        .unwrap();
    let out = d
        .output_topic("graded", Serdes::string(), Serdes::string())
        .read_key_values()
        .unwrap();
    assert_eq!(out, vec![("q1".to_string(), "q1|A vs Q".to_string())]);
}

#[test]
fn table_table_inner_and_left_joins_follow_both_sides() {
    let b = StreamsBuilder::new();
    let left = b.table("left", strings(), Materialized::named("l"));
    let right = b.table("right", strings(), Materialized::named("r"));
    let nullable = || Produced::with(Serdes::string(), Serdes::nullable(Serdes::string()));
    left.join(&right, |l, r| format!("{l}+{r}"))
        .to_stream()
        .to("inner", nullable());
    left.left_join(&right, |l, r| {
        format!("{l}+{}", r.map_or("null", |r| r.as_str()))
    })
    .to_stream()
    .to("left-join", nullable());
    let d = driver(&b);
    let l = d.input_topic("left", Serdes::string(), Serdes::nullable(Serdes::string()));
    let r = d.input_topic(
        "right",
        Serdes::string(),
        Serdes::nullable(Serdes::string()),
    );
    r.pipe_str("k", Some("r0".into()), 0).unwrap(); // no left row yet: nothing from either join
    l.pipe_str("k", Some("a1".into()), 1).unwrap();
    r.pipe_str("k", Some("b1".into()), 2).unwrap();
    l.pipe_str("k", Some("a2".into()), 3).unwrap();
    r.pipe_str("k", None, 4).unwrap();
    l.pipe_str("k", None, 5).unwrap();
    let read = |t: &str| {
        d.output_topic(t, Serdes::string(), Serdes::nullable(Serdes::string()))
            .read_values()
            .unwrap()
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        read("inner"),
        vec![s("a1+r0"), s("a1+b1"), s("a2+b1"), None, None]
    );
    assert_eq!(
        read("left-join"),
        vec![s("a1+r0"), s("a1+b1"), s("a2+b1"), s("a2+null"), None]
    );
}

fn stream_join_topology(kind: &str) -> StreamsBuilder {
    let b = StreamsBuilder::new();
    let left = b.stream(&["L"], strings());
    let right = b.stream(&["R"], strings());
    let w = JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10));
    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "null".into());
    let joined = match kind {
        "inner" => left.join(&right, |l, r| format!("{l}+{r}"), w),
        "left" => left.left_join(&right, move |l, r| format!("{l}+{}", show(r)), w),
        _ => left.outer_join(&right, move |l, r| format!("{}+{}", show(l), show(r)), w),
    };
    joined.to("out", Produced::with(Serdes::string(), Serdes::string()));
    b
}

/// Pipes `records` and returns the join results they caused.
fn pipe_all(
    d: &TopologyTestDriver,
    records: &[(&str, &str, &str, i64)],
) -> Vec<(String, String, i64)> {
    let before = d.topic_records("out").len();
    for (topic, k, v, t) in records {
        d.input_topic(topic, Serdes::string(), Serdes::string())
            .pipe_str(k, v.to_string(), *t)
            .unwrap();
    }
    d.output_topic("out", Serdes::string(), Serdes::string())
        .read_records()
        .unwrap()
        .into_iter()
        .skip(before)
        .map(|r| (r.key, r.value, r.timestamp))
        .collect()
}

#[test]
fn stream_stream_inner_join_includes_the_window_edges() {
    let d = driver(&stream_join_topology("inner"));
    let out = pipe_all(
        &d,
        &[
            ("L", "a", "l1", 0),
            ("R", "a", "r1", 10),
            ("R", "a", "r2", 11),
            ("L", "a", "l2", 12),
            ("R", "b", "rb", 12),
        ],
    );
    let s = |k: &str, v: &str, t| (k.to_string(), v.to_string(), t);
    assert_eq!(
        out,
        vec![
            s("a", "l1+r1", 10),
            s("a", "l2+r1", 12),
            s("a", "l2+r2", 12)
        ]
    );
}

#[test]
fn stream_stream_left_join_emits_unmatched_records_once_their_window_closes() {
    let d = driver(&stream_join_topology("left"));
    let s = |k: &str, v: &str, t| (k.to_string(), v.to_string(), t);
    let first = pipe_all(
        &d,
        &[
            ("L", "a", "l1", 0),
            ("L", "b", "lb", 1),
            ("R", "a", "r1", 5),
        ],
    );
    assert_eq!(
        first,
        vec![s("a", "l1+r1", 5)],
        "b's window is still open: no spurious null result"
    );
    let later = pipe_all(&d, &[("R", "c", "rc", 20)]);
    assert_eq!(
        later,
        vec![s("b", "lb+null", 1)],
        "window of b closed at 1 + 10: it is emitted once"
    );
    assert!(
        pipe_all(&d, &[("R", "c", "rc2", 40)]).is_empty(),
        "a right-only record never reaches a left join"
    );
}

#[test]
fn stream_stream_outer_join_emits_both_unmatched_sides() {
    let d = driver(&stream_join_topology("outer"));
    let s = |k: &str, v: &str, t| (k.to_string(), v.to_string(), t);
    let out = pipe_all(
        &d,
        &[
            ("L", "a", "l1", 0),
            ("R", "c", "rc", 20),
            ("L", "d", "ld", 31),
            ("R", "d", "rd", 35),
            ("L", "z", "lz", 60),
        ],
    );
    assert_eq!(
        out,
        vec![
            s("a", "l1+null", 0),
            s("c", "null+rc", 20),
            s("d", "ld+rd", 35)
        ]
    );
}

#[test]
fn stream_stream_join_drops_records_older_than_the_window_and_grace() {
    let d = driver(&stream_join_topology("inner"));
    let out = pipe_all(&d, &[("L", "a", "l1", 100), ("R", "a", "late", 50)]);
    assert!(out.is_empty());
    assert_eq!(d.dropped().get("late-record"), Some(&1));
}
