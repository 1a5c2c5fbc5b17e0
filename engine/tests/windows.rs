//! Windowed aggregations: boundaries, hopping overlaps, sliding and session windows, grace,
//! and the two emit strategies, through the test driver.

use std::time::Duration;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, EmitStrategy, Grouped, KGroupedStream, Materialized, Produced, Serdes,
    SessionWindows, SlidingWindows, StreamsBuilder, StreamsConfig, TimeWindows, Windowed,
};

type Out = (String, i64, i64, Option<i64>);

fn grouped(b: &StreamsBuilder) -> KGroupedStream<String, String> {
    b.stream(&["in"], Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
}

fn run(b: &StreamsBuilder, records: &[(&str, i64)]) -> (Vec<Out>, TopologyTestDriver) {
    let d = TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("w")).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    for (k, t) in records {
        input.pipe_str(k, "x".into(), *t).unwrap();
    }
    (read(&d), d)
}

fn read(d: &TopologyTestDriver) -> Vec<Out> {
    d.output_topic(
        "out",
        Serdes::windowed(Serdes::string()),
        Serdes::nullable(Serdes::i64()),
    )
    .read_key_values()
    .unwrap()
    .into_iter()
    .map(|(w, v)| (w.key, w.start, w.end, v))
    .collect()
}

fn to_out(t: eddy_engine::KTable<Windowed<String>, i64>) {
    t.to_stream().to(
        "out",
        Produced::with(
            Serdes::windowed(Serdes::string()),
            Serdes::nullable(Serdes::i64()),
        ),
    );
}

fn o(k: &str, s: i64, e: i64, v: Option<i64>) -> Out {
    (k.to_string(), s, e, v)
}

#[test]
fn tumbling_windows_start_inclusive_end_exclusive_and_drop_late_records() {
    let b = StreamsBuilder::new();
    let counts = Materialized::named("counts").with_retention(Duration::from_secs(60));
    to_out(
        grouped(&b)
            .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
                10,
            )))
            .count(counts),
    );
    let (out, d) = run(&b, &[("a", 0), ("a", 9), ("a", 10), ("b", 19), ("a", 3)]);
    assert_eq!(
        out,
        vec![
            o("a", 0, 10, Some(1)),
            o("a", 0, 10, Some(2)),
            o("a", 10, 20, Some(1)),
            o("b", 10, 20, Some(1))
        ]
    );
    assert_eq!(
        d.dropped().get("late-record"),
        Some(&1),
        "t=3 arrives after [0,10) closed at stream time 19"
    );
    let store = d.window_store::<String, i64>("counts").unwrap();
    assert_eq!(store.fetch(&"a".into(), 0).unwrap(), Some(2));
    assert_eq!(
        store.fetch_range(&"a".into(), 0, 100).unwrap(),
        vec![(0, 2), (10, 1)]
    );
}

#[test]
fn grace_keeps_windows_open_for_late_records() {
    let b = StreamsBuilder::new();
    to_out(
        grouped(&b)
            .windowed_by(TimeWindows::of_size_and_grace(
                Duration::from_millis(10),
                Duration::from_millis(5),
            ))
            .count(Materialized::named("c")),
    );
    let (out, d) = run(&b, &[("a", 12), ("a", 8), ("a", 15), ("a", 9)]);
    // t=8 at stream time 12: [0,10) closes at 15, so it counts; t=9 at stream time 15 does not.
    assert_eq!(
        out,
        vec![
            o("a", 10, 20, Some(1)),
            o("a", 0, 10, Some(1)),
            o("a", 10, 20, Some(2))
        ]
    );
    assert_eq!(d.dropped().get("late-record"), Some(&1));
}

#[test]
fn hopping_windows_overlap() {
    let b = StreamsBuilder::new();
    let w = TimeWindows::of_size_with_no_grace(Duration::from_millis(10))
        .advance_by(Duration::from_millis(5));
    to_out(grouped(&b).windowed_by(w).count(Materialized::named("c")));
    let (out, _) = run(&b, &[("a", 7), ("a", 12)]);
    assert_eq!(
        out,
        vec![
            o("a", 0, 10, Some(1)),
            o("a", 5, 15, Some(1)),
            o("a", 5, 15, Some(2)),
            o("a", 10, 20, Some(1))
        ]
    );
}

#[test]
fn emit_on_window_close_sends_each_window_once_with_its_final_value() {
    let b = StreamsBuilder::new();
    let w = TimeWindows::of_size_and_grace(Duration::from_millis(10), Duration::from_millis(2));
    to_out(
        grouped(&b)
            .windowed_by(w)
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::named("c")),
    );
    let d = TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("w")).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    let out = d.output_topic(
        "out",
        Serdes::windowed(Serdes::string()),
        Serdes::nullable(Serdes::i64()),
    );
    let mut seen = Vec::new();
    for (k, t) in [
        ("a", 1),
        ("b", 3),
        ("a", 9),
        ("a", 11),
        ("a", 8),
        ("b", 12),
        ("a", 25),
    ] {
        input.pipe_str(k, "x".into(), t).unwrap();
        let batch: Vec<Out> = out
            .read_key_values()
            .unwrap()
            .into_iter()
            .map(|(w, v)| (w.key, w.start, w.end, v))
            .collect();
        seen.push((t, batch));
    }
    // Nothing until stream time reaches 10 + 2; then [0,10) for both keys (a=3 with the late 8).
    assert!(seen[..4].iter().all(|(_, out)| out.is_empty()), "{seen:?}");
    assert_eq!(seen[4].1, vec![]);
    assert_eq!(
        seen[5].1,
        vec![o("a", 0, 10, Some(3)), o("b", 0, 10, Some(1))]
    );
    assert_eq!(
        seen[6].1,
        vec![o("a", 10, 20, Some(1)), o("b", 10, 20, Some(1))]
    );
}

#[test]
fn emit_every_update_sends_each_change() {
    let b = StreamsBuilder::new();
    let w = TimeWindows::of_size_and_grace(Duration::from_millis(10), Duration::from_millis(2));
    to_out(
        grouped(&b)
            .windowed_by(w)
            .emit_strategy(EmitStrategy::OnWindowUpdate)
            .count(Materialized::named("c")),
    );
    let (out, _) = run(
        &b,
        &[
            ("a", 1),
            ("b", 3),
            ("a", 9),
            ("a", 11),
            ("a", 8),
            ("b", 12),
            ("a", 25),
        ],
    );
    assert_eq!(
        out,
        vec![
            o("a", 0, 10, Some(1)),
            o("b", 0, 10, Some(1)),
            o("a", 0, 10, Some(2)),
            o("a", 10, 20, Some(1)),
            o("a", 0, 10, Some(3)),
            o("b", 10, 20, Some(1)),
            o("a", 20, 30, Some(1)),
        ]
    );
}

#[test]
fn sliding_windows_follow_kafka_streams() {
    let b = StreamsBuilder::new();
    let w = SlidingWindows::of_time_difference_and_grace(
        Duration::from_millis(10),
        Duration::from_millis(20),
    );
    to_out(
        grouped(&b)
            .windowed_by_sliding(w)
            .count(Materialized::named("c")),
    );
    let (out, d) = run(&b, &[("a", 5), ("a", 12), ("a", 8)]);
    assert_eq!(
        out,
        vec![
            // t=5: an early record's window is [0, 10].
            o("a", 0, 10, Some(1)),
            // t=12: its left window [2,12] holds 5 and 12; 5's right window [6,16] holds 12.
            o("a", 2, 12, Some(2)),
            o("a", 6, 16, Some(1)),
            // t=8 (out of order) joins every window that holds it and opens its right window [9,19].
            o("a", 0, 10, Some(2)),
            o("a", 2, 12, Some(3)),
            o("a", 6, 16, Some(2)),
            o("a", 9, 19, Some(1)),
        ]
    );
    let store = d.window_store::<String, i64>("c").unwrap();
    assert_eq!(
        store.fetch_range(&"a".into(), 0, 100).unwrap(),
        vec![(0, 2), (2, 3), (6, 2), (9, 1)]
    );
}

#[test]
fn sliding_windows_drop_records_whose_windows_closed() {
    let b = StreamsBuilder::new();
    let w = SlidingWindows::of_time_difference_with_no_grace(Duration::from_millis(10));
    to_out(
        grouped(&b)
            .windowed_by_sliding(w)
            .count(Materialized::named("c")),
    );
    let (out, d) = run(&b, &[("a", 100), ("a", 50)]);
    // With no grace a window stays open until stream time passes its (inclusive) end.
    assert_eq!(out, vec![o("a", 90, 100, Some(1))]);
    assert_eq!(d.dropped().get("late-record"), Some(&1));
}

#[test]
fn session_windows_merge_on_overlap() {
    let b = StreamsBuilder::new();
    let w = SessionWindows::of_inactivity_gap_and_grace(
        Duration::from_millis(10),
        Duration::from_millis(100),
    );
    to_out(
        grouped(&b)
            .windowed_by_session(w)
            .count(Materialized::named("s").without_caching()),
    );
    let (out, _) = run(
        &b,
        &[
            ("a", 0),
            ("a", 5),
            ("a", 30),
            ("a", 20),
            ("a", 12),
            ("b", 3),
        ],
    );
    assert_eq!(
        out,
        vec![
            o("a", 0, 0, Some(1)),
            o("a", 0, 0, None),
            o("a", 0, 5, Some(2)),
            o("a", 30, 30, Some(1)),
            o("a", 30, 30, None),
            o("a", 20, 30, Some(2)),
            // t=12 lies within the gap of both [0,5] and [20,30]: one session now.
            o("a", 0, 5, None),
            o("a", 20, 30, None),
            o("a", 0, 30, Some(5)),
            o("b", 3, 3, Some(1)),
        ]
    );
}

#[test]
fn session_windows_drop_records_of_closed_sessions() {
    let b = StreamsBuilder::new();
    to_out(
        grouped(&b)
            .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(
                Duration::from_millis(10),
            ))
            .count(Materialized::named("s")),
    );
    let (out, d) = run(&b, &[("a", 0), ("a", 100), ("a", 95), ("a", 50)]);
    assert_eq!(
        out,
        vec![
            o("a", 0, 0, Some(1)),
            o("a", 100, 100, Some(1)),
            o("a", 100, 100, None),
            o("a", 95, 100, Some(2))
        ]
    );
    assert_eq!(
        d.dropped().get("late-record"),
        Some(&1),
        "t=50 ends before stream time 100 - gap"
    );
    let sessions = d.session_store::<String, i64>("s").unwrap();
    let all: Vec<(i64, i64, i64)> = sessions
        .all()
        .unwrap()
        .into_iter()
        .map(|(_, s, e, v)| (s, e, v))
        .collect();
    assert_eq!(
        all,
        vec![(95, 100, 2)],
        "[0,0] is past retention (gap + grace)"
    );
}

#[test]
fn sessions_expire_with_the_store_retention() {
    let b = StreamsBuilder::new();
    to_out(
        grouped(&b)
            .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(
                Duration::from_millis(10),
            ))
            .count(Materialized::named("s")),
    );
    let (_, d) = run(&b, &[("a", 0), ("b", 5), ("a", 200_000)]);
    let sessions = d.session_store::<String, i64>("s").unwrap();
    let left: Vec<(String, i64)> = sessions
        .all()
        .unwrap()
        .into_iter()
        .map(|(k, s, _, _)| (k, s))
        .collect();
    assert_eq!(left, vec![("a".to_string(), 200_000)]);
}

#[test]
fn session_emit_on_close_sends_final_sessions_once() {
    let b = StreamsBuilder::new();
    let w = SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_millis(10));
    to_out(
        grouped(&b)
            .windowed_by_session(w)
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::named("s")),
    );
    let (out, _) = run(&b, &[("a", 0), ("a", 5), ("b", 8), ("a", 30), ("a", 31)]);
    assert_eq!(out, vec![o("a", 0, 5, Some(2)), o("b", 8, 8, Some(1))]);
}

#[test]
fn windows_of_a_quiet_input_close_after_the_wall_clock_idle_timeout() {
    let b = StreamsBuilder::new();
    let w =
        TimeWindows::of_size_and_grace(Duration::from_millis(1_000), Duration::from_millis(500));
    to_out(
        grouped(&b)
            .windowed_by(w)
            .emit_strategy(EmitStrategy::OnWindowClose)
            .close_on_idle(Duration::from_secs(10))
            .count(Materialized::named("c")),
    );
    let d = TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("w")).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    input.pipe_str("a", "x".into(), 100).unwrap();
    input.pipe_str("a", "x".into(), 900).unwrap();
    let out = d.output_topic(
        "out",
        Serdes::windowed(Serdes::string()),
        Serdes::nullable(Serdes::i64()),
    );
    d.advance_wall_clock(9_000).unwrap();
    assert!(
        out.read_key_values().unwrap().is_empty(),
        "not idle long enough"
    );
    d.advance_wall_clock(1_000).unwrap();
    let closed: Vec<Out> = out
        .read_key_values()
        .unwrap()
        .into_iter()
        .map(|(w, v)| (w.key, w.start, w.end, v))
        .collect();
    assert_eq!(
        closed,
        vec![o("a", 0, 1_000, Some(2))],
        "the quiet window closes once"
    );
    d.advance_wall_clock(60_000).unwrap();
    assert!(out.read_key_values().unwrap().is_empty(), "and only once");
}

#[test]
fn sliding_emit_on_close_sends_each_window_once_with_its_final_value() {
    let b = StreamsBuilder::new();
    let w = SlidingWindows::of_time_difference_and_grace(
        Duration::from_millis(10),
        Duration::from_millis(20),
    );
    to_out(
        grouped(&b)
            .windowed_by_sliding(w)
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::named("c")),
    );
    // Stream time 100 closes every window ending before 80; the windows of t=100 stay open.
    let (out, _) = run(&b, &[("a", 5), ("a", 12), ("a", 8), ("b", 40), ("a", 100)]);
    assert_eq!(
        out,
        vec![
            o("a", 0, 10, Some(2)),
            o("a", 2, 12, Some(3)),
            o("a", 6, 16, Some(2)),
            o("a", 9, 19, Some(1)),
            o("b", 30, 40, Some(1)),
        ]
    );
}

#[test]
fn session_emit_on_close_sends_merged_sessions_once_and_never_the_merged_away() {
    let b = StreamsBuilder::new();
    let w = SessionWindows::of_inactivity_gap_and_grace(
        Duration::from_millis(10),
        Duration::from_millis(100),
    );
    to_out(
        grouped(&b)
            .windowed_by_session(w)
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::named("s")),
    );
    // a: [0,0] and [18,18] merge at 9 into [0,18]; then [40,50] takes 35 in as [35,50], which
    // keeps its end; b: [5,5]. Stream time 300 closes all of them.
    let (out, _) = run(
        &b,
        &[
            ("a", 0),
            ("b", 5),
            ("a", 18),
            ("a", 9),
            ("a", 40),
            ("a", 50),
            ("a", 35),
            ("a", 300),
        ],
    );
    assert_eq!(
        out,
        vec![
            o("b", 5, 5, Some(1)),
            o("a", 0, 18, Some(3)),
            o("a", 35, 50, Some(3)),
        ]
    );
}

#[test]
fn a_session_ending_exactly_at_the_close_time_is_still_emitted_and_merged() {
    let b = StreamsBuilder::new();
    let w = SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_millis(10));
    to_out(
        grouped(&b)
            .windowed_by_session(w)
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::named("s")),
    );
    // At b@10 the close time is 0, so a[0,0] is still open; b@11 closes it.
    let (out, _) = run(&b, &[("a", 0), ("b", 10), ("b", 11)]);
    assert_eq!(out, vec![o("a", 0, 0, Some(1))]);
    // A record exactly one gap after a session's end still joins it.
    let b = StreamsBuilder::new();
    to_out(
        grouped(&b)
            .windowed_by_session(w)
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::named("s")),
    );
    let (out, _) = run(&b, &[("a", 0), ("b", 10), ("a", 10), ("b", 100)]);
    assert_eq!(out, vec![o("a", 0, 10, Some(2)), o("b", 10, 10, Some(1))]);
}
