//! Bad input through the test driver: malformed values under both exception-handler modes, and
//! a failing processor.

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{Consumed, ErrorKind, Headers, Produced, Serdes, StreamsBuilder, StreamsConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Event {
    id: String,
    score: u32,
}

fn topology() -> eddy_engine::Topology {
    let b = StreamsBuilder::new();
    b.stream(
        &["events"],
        Consumed::with(Serdes::string(), Serdes::json::<Event>()),
    )
    .map_values(|e| e.score as i64)
    .to("scores", Produced::with(Serdes::string(), Serdes::i64()));
    b.build().unwrap()
}

#[test]
fn log_and_fail_stops_on_a_malformed_value_with_a_clear_error() {
    let d = TopologyTestDriver::in_memory(topology(), StreamsConfig::new("e")).unwrap();
    let err = d
        .pipe_raw(
            "events",
            Some(b"k".to_vec()),
            Some(b"{not json".to_vec()),
            0,
            Headers::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRecord);
    let text = err.to_string();
    assert!(
        text.contains("events-0@0") && text.contains("json"),
        "{text}"
    );
}

#[test]
fn log_and_continue_dead_letters_and_counts_then_goes_on() {
    let mut config = StreamsConfig::new("e");
    config
        .set("deserialization.exception.handler", "log_and_continue")
        .unwrap();
    let d = TopologyTestDriver::in_memory(topology(), config).unwrap();
    let good = serde_json::to_vec(&Event {
        id: "a".into(),
        score: 7,
    })
    .unwrap();
    d.pipe_raw(
        "events",
        Some(b"k1".to_vec()),
        Some(b"{not json".to_vec()),
        0,
        Headers::new(),
    )
    .unwrap();
    d.pipe_raw("events", Some(b"k2".to_vec()), None, 0, Headers::new())
        .unwrap();
    d.pipe_raw(
        "events",
        Some(b"k3".to_vec()),
        Some(good),
        0,
        Headers::new(),
    )
    .unwrap();
    let out = d
        .output_topic("scores", Serdes::string(), Serdes::i64())
        .read_key_values()
        .unwrap();
    assert_eq!(
        out,
        vec![("k3".to_string(), 7)],
        "processing went on after the bad records"
    );
    let dead = d.dead_letters();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0].offset, dead[0].value.as_deref()),
        (0, Some(&b"{not json"[..])),
        "raw bytes are kept"
    );
    assert!(dead[0].error.contains("json"), "{}", dead[0].error);
    assert!(dead[1].error.contains("null"), "{}", dead[1].error);
    assert_eq!(d.dropped().get("deserialization-error"), Some(&2));
}

#[test]
fn a_processor_can_dead_letter_a_record_it_rejects() {
    let b = StreamsBuilder::new();
    struct RequireId;
    impl eddy_engine::Processor<String, Event, String, Event> for RequireId {
        fn process(
            &mut self,
            r: eddy_engine::Record<String, Event>,
            ctx: &mut eddy_engine::ProcessorContext<'_, String, Event>,
        ) -> eddy_engine::Result<()> {
            if r.value.id.is_empty() {
                ctx.dead_letter("missing entity id");
                return Ok(());
            }
            ctx.forward(r)
        }
    }
    b.stream(
        &["events"],
        Consumed::with(Serdes::string(), Serdes::json::<Event>()),
    )
    .process(|| RequireId, &[])
    .to(
        "ok",
        Produced::with(Serdes::string(), Serdes::json::<Event>()),
    );
    let d = TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("e")).unwrap();
    let input = d.input_topic("events", Serdes::string(), Serdes::json::<Event>());
    input
        .pipe_str(
            "k",
            Event {
                id: "".into(),
                score: 1,
            },
            0,
        )
        .unwrap();
    input
        .pipe_str(
            "k",
            Event {
                id: "x".into(),
                score: 2,
            },
            0,
        )
        .unwrap();
    assert_eq!(
        d.output_topic("ok", Serdes::string(), Serdes::json::<Event>())
            .read_values()
            .unwrap()
            .len(),
        1
    );
    let dead = d.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, "missing entity id");
}

#[test]
fn a_failing_processor_follows_the_processing_handler() {
    let build = || {
        let b = StreamsBuilder::new();
        struct Fails;
        impl eddy_engine::Processor<String, String, String, String> for Fails {
            fn process(
                &mut self,
                r: eddy_engine::Record<String, String>,
                ctx: &mut eddy_engine::ProcessorContext<'_, String, String>,
            ) -> eddy_engine::Result<()> {
                if r.value == "boom" {
                    return Err(eddy_engine::EngineError::processing(
                        "fails",
                        "cannot handle boom",
                    ));
                }
                ctx.forward(r)
            }
        }
        b.stream(&["in"], Consumed::with(Serdes::string(), Serdes::string()))
            .process(|| Fails, &[])
            .to("out", Produced::with(Serdes::string(), Serdes::string()));
        b.build().unwrap()
    };
    let d = TopologyTestDriver::in_memory(build(), StreamsConfig::new("e")).unwrap();
    assert!(d
        .input_topic("in", Serdes::string(), Serdes::string())
        .pipe_str("k", "boom".into(), 0)
        .is_err());

    let mut config = StreamsConfig::new("e");
    config
        .set("processing.exception.handler", "log_and_continue")
        .unwrap();
    let d = TopologyTestDriver::in_memory(build(), config).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    input.pipe_str("k", "boom".into(), 0).unwrap();
    input.pipe_str("k", "fine".into(), 0).unwrap();
    assert_eq!(
        d.output_topic("out", Serdes::string(), Serdes::string())
            .read_values()
            .unwrap(),
        vec!["fine"]
    );
    assert_eq!(d.dropped().get("processing-error"), Some(&1));
    assert!(d.dead_letters()[0].error.contains("cannot handle boom"));
}

#[test]
fn dropped_records_reach_prometheus() {
    let mut config = StreamsConfig::new("metrics-app");
    config
        .set("deserialization.exception.handler", "log_and_continue")
        .unwrap();
    let d = TopologyTestDriver::in_memory(topology(), config).unwrap();
    d.pipe_raw("events", None, Some(b"garbage".to_vec()), 0, Headers::new())
        .unwrap();
    let families = prometheus::gather();
    let dropped = families
        .iter()
        .find(|f| f.name() == "eddy_task_dropped_records_total")
        .expect("registered");
    let sample = dropped
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == "metrics-app"))
        .expect("a sample for this application");
    assert_eq!(sample.get_counter().get_value(), 1.0);
}
