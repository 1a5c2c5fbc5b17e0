//! Stateless operators and the Processor API, through the test driver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, Headers, Processor, ProcessorContext, Produced, PunctuationType, Record, Result,
    ScheduleId, Serdes, StreamsBuilder, StreamsConfig, TopologyBuilder,
};

fn strings() -> Consumed<String, String> {
    Consumed::with(Serdes::string(), Serdes::string())
}

fn driver(b: &StreamsBuilder) -> TopologyTestDriver {
    TopologyTestDriver::in_memory(b.build().unwrap(), StreamsConfig::new("test")).unwrap()
}

#[test]
fn filter_and_filter_not_split_the_stream() {
    let b = StreamsBuilder::new();
    let s = b.stream(&["in"], strings());
    s.filter(|_, v| v.starts_with('a'))
        .to("kept", Produced::default());
    s.filter_not(|_, v| v.starts_with('a'))
        .to("rejected", Produced::default());
    let d = driver(&b);
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    for v in ["apple", "banana", "avocado"] {
        input.pipe_str("k", v.into(), 1).unwrap();
    }
    let kept = d.output_topic("kept", Serdes::string(), Serdes::string());
    let rejected = d.output_topic("rejected", Serdes::string(), Serdes::string());
    assert_eq!(kept.read_values().unwrap(), vec!["apple", "avocado"]);
    assert_eq!(rejected.read_values().unwrap(), vec!["banana"]);
}

#[test]
fn map_map_values_select_key_and_flat_maps() {
    let b = StreamsBuilder::new();
    let s = b.stream(&["in"], strings());
    s.map(|k, v| (v, k)).to(
        "swapped",
        Produced::with(Serdes::string(), Serdes::string()),
    );
    s.map_values(|v| v.len() as i64)
        .to("lengths", Produced::with(Serdes::string(), Serdes::i64()));
    s.select_key(|_, v| v.to_uppercase()).to(
        "rekeyed",
        Produced::with(Serdes::string(), Serdes::string()),
    );
    s.flat_map(|k, v| {
        v.split(' ')
            .map(|w| (w.to_string(), k.clone()))
            .collect::<Vec<_>>()
    })
    .to("words", Produced::with(Serdes::string(), Serdes::string()));
    s.flat_map_values(|v| {
        v.chars()
            .filter(|c| *c != ' ')
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
    })
    .to("chars", Produced::with_value(Serdes::string()));
    let d = driver(&b);
    d.input_topic("in", Serdes::string(), Serdes::string())
        .pipe_str("k1", "ab c".into(), 7)
        .unwrap();
    let read = |t: &str| {
        d.output_topic(t, Serdes::string(), Serdes::string())
            .read_key_values()
            .unwrap()
    };
    assert_eq!(read("swapped"), vec![("ab c".into(), "k1".into())]);
    assert_eq!(read("rekeyed"), vec![("AB C".into(), "ab c".into())]);
    assert_eq!(
        read("words"),
        vec![("ab".into(), "k1".into()), ("c".into(), "k1".into())]
    );
    assert_eq!(
        read("chars"),
        vec![
            ("k1".into(), "a".into()),
            ("k1".into(), "b".into()),
            ("k1".into(), "c".into())
        ]
    );
    let lengths = d
        .output_topic("lengths", Serdes::string(), Serdes::i64())
        .read_records()
        .unwrap();
    assert_eq!(
        (lengths[0].value, lengths[0].timestamp),
        (4, 7),
        "timestamps pass through"
    );
}

#[test]
fn peek_sees_every_record_and_merge_joins_streams() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let b = StreamsBuilder::new();
    let a = b.stream(&["a"], strings());
    let c = b.stream(&["c"], strings());
    let log = Arc::clone(&seen);
    a.merge(&c)
        .peek(move |k, _| log.lock().unwrap().push(k.clone()))
        .to("out", Produced::default());
    let d = driver(&b);
    d.input_topic("a", Serdes::string(), Serdes::string())
        .pipe_str("1", "x".into(), 0)
        .unwrap();
    d.input_topic("c", Serdes::string(), Serdes::string())
        .pipe_str("2", "y".into(), 0)
        .unwrap();
    d.input_topic("a", Serdes::string(), Serdes::string())
        .pipe_str("3", "z".into(), 0)
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec!["1", "2", "3"]);
    assert_eq!(
        d.output_topic("out", Serdes::string(), Serdes::string())
            .read_values()
            .unwrap(),
        vec!["x", "y", "z"]
    );
}

#[test]
fn split_sends_each_record_to_the_first_matching_branch() {
    let b = StreamsBuilder::new();
    let branches = b
        .stream(&["in"], strings())
        .split()
        .branch("short", |_, v| v.len() < 3)
        .branch("medium", |_, v| v.len() < 6)
        .default_branch("long")
        .build();
    for (name, stream) in branches {
        stream.to(&format!("out-{name}"), Produced::default());
    }
    let d = driver(&b);
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    for v in ["ab", "abcd", "abcdefgh", "a"] {
        input.pipe_str("k", v.into(), 0).unwrap();
    }
    let read = |t: &str| {
        d.output_topic(t, Serdes::string(), Serdes::string())
            .read_values()
            .unwrap()
    };
    assert_eq!(read("out-short"), vec!["ab", "a"]);
    assert_eq!(read("out-medium"), vec!["abcd"]);
    assert_eq!(read("out-long"), vec!["abcdefgh"]);
}

/// Counts records and reports on punctuation; checks metadata and headers on the way.
struct Reporter {
    count: i64,
    stream_schedule: Option<ScheduleId>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Processor<String, String, String, String> for Reporter {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<()> {
        self.stream_schedule =
            Some(ctx.schedule(Duration::from_millis(10), PunctuationType::StreamTime));
        ctx.schedule(Duration::from_millis(100), PunctuationType::WallClock);
        Ok(())
    }
    fn process(
        &mut self,
        record: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> Result<()> {
        self.count += 1;
        let meta = ctx.record_metadata().cloned().unwrap();
        let header = record
            .headers
            .last("trace")
            .map(|h| String::from_utf8_lossy(h).to_string())
            .unwrap_or_default();
        self.log.lock().unwrap().push(format!(
            "record {}@{} t={} trace={header}",
            meta.topic, meta.offset, record.timestamp
        ));
        Ok(())
    }
    fn punctuate(
        &mut self,
        schedule: ScheduleId,
        timestamp: i64,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> Result<()> {
        let kind = if Some(schedule) == self.stream_schedule {
            "stream"
        } else {
            "wall"
        };
        self.log
            .lock()
            .unwrap()
            .push(format!("{kind} punctuation at {timestamp}"));
        ctx.forward(Record::new(
            kind.to_string(),
            self.count.to_string(),
            timestamp,
        ))
    }
}

#[test]
fn punctuation_of_both_kinds_and_record_metadata() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut t = TopologyBuilder::new();
    t.add_source("src", &["in"], Serdes::string(), Serdes::string())
        .unwrap();
    let l = Arc::clone(&log);
    t.add_processor(
        "reporter",
        move || Reporter {
            count: 0,
            stream_schedule: None,
            log: Arc::clone(&l),
        },
        &["src"],
    )
    .unwrap();
    t.add_sink(
        "sink",
        "reports",
        Serdes::string(),
        Serdes::string(),
        &["reporter"],
    )
    .unwrap();
    let d = TopologyTestDriver::in_memory(t.build().unwrap(), StreamsConfig::new("p")).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::string());
    let mut h = Headers::new();
    h.add("trace", "t-1");
    input
        .pipe_with_headers("k".into(), "v".into(), 5, h)
        .unwrap();
    input.pipe_str("k", "v".into(), 9).unwrap();
    input.pipe_str("k", "v".into(), 31).unwrap();
    d.advance_wall_clock(99).unwrap();
    d.advance_wall_clock(1).unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "record in@0 t=5 trace=t-1",
            "stream punctuation at 5",
            "record in@1 t=9 trace=",
            "record in@2 t=31 trace=",
            "stream punctuation at 31",
            "wall punctuation at 100",
        ]
    );
    let reports = d
        .output_topic("reports", Serdes::string(), Serdes::string())
        .read_key_values()
        .unwrap();
    assert_eq!(
        reports,
        vec![
            ("stream".into(), "1".into()),
            ("stream".into(), "3".into()),
            ("wall".into(), "3".into())
        ]
    );
}

#[test]
fn describe_lists_subtopologies_as_text_and_mermaid() {
    let b = StreamsBuilder::new();
    b.stream(&["in"], strings())
        .select_key(|_, v| v.clone())
        .group_by_key(eddy_engine::Grouped::named("by-value"))
        .count(eddy_engine::Materialized::named("counts"))
        .to_stream()
        .to(
            "out",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    let topology = b.build().unwrap();
    assert_eq!(
        topology.subtopologies().len(),
        2,
        "the key change cuts the topology at a repartition topic"
    );
    let text = topology.describe();
    assert!(text.contains("Sub-topology: 0"), "{text}");
    assert!(text.contains("Sub-topology: 1"), "{text}");
    assert!(text.contains("Sink: KSTREAM-SINK-"), "{text}");
    assert!(text.contains("(topic: by-value-repartition)"), "{text}");
    assert!(text.contains("(stores: [counts])"), "{text}");
    let mermaid = topology.describe_mermaid();
    assert!(mermaid.starts_with("flowchart LR"));
    assert!(mermaid.contains("subgraph sub1"));
    assert!(mermaid.contains("s_counts[(\"counts\")]"));
    assert_eq!(
        topology.physical_topic("app", "by-value-repartition"),
        "app-by-value-repartition"
    );
    let topics = topology.topics();
    assert_eq!(
        topics.get("counts-changelog"),
        Some(&eddy_engine::TopicKind::Changelog)
    );
}

#[test]
fn topology_mistakes_are_clear_errors() {
    let mut t = TopologyBuilder::new();
    t.add_source("src", &["in"], Serdes::string(), Serdes::string())
        .unwrap();
    assert!(
        t.add_source("src", &["other"], Serdes::string(), Serdes::string())
            .is_err(),
        "duplicate name"
    );
    assert!(
        t.add_sink("sink", "out", Serdes::string(), Serdes::string(), &["nope"])
            .is_err(),
        "unknown parent"
    );
    t.add_sink("sink", "out", Serdes::i64(), Serdes::string(), &["src"])
        .unwrap();
    let err = t.build().unwrap_err().to_string();
    assert!(
        err.contains("takes"),
        "a type mismatch on an edge is caught at build: {err}"
    );

    let b = StreamsBuilder::new();
    b.stream(&["in"], strings())
        .map(|k, v| (k, v.len()))
        .to("out", Produced::default());
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("Produced::with"), "{err}");
}
