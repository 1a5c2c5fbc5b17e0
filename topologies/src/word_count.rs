//! `word-count` and `windowed-word-count`: the classic first topology, a repartition and a
//! count, plain and per tumbling window.

use std::time::Duration;

use eddy_engine::{
    Consumed, Grouped, KStream, Materialized, Produced, Result, Serdes, StreamsBuilder,
    TimeWindows, Topology,
};

/// The lowercase words of `text-lines`, grouped (through a repartition) by word.
fn words(b: &StreamsBuilder) -> KStream<String, String> {
    b.stream(
        &["text-lines"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .flat_map_values(|line| {
        line.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
    })
}

/// Splits lines of `text-lines` into lowercase words and counts them per word in the store
/// `word-counts`, writing each new count to the topic `word-counts`.
///
/// ```
/// let topology = eddy_topologies::word_count().unwrap();
/// assert_eq!(topology.subtopologies().len(), 2);
/// ```
pub fn word_count() -> Result<Topology> {
    let b = StreamsBuilder::new();
    words(&b)
        .group_by(
            |_, word| word.clone(),
            Grouped::named("words").with(Serdes::string(), Serdes::string()),
        )
        .count(Materialized::named("word-counts"))
        .to_stream()
        .to(
            "word-counts",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    b.build()
}

/// Counts the words of `text-lines` per word and 1-second tumbling window (one hour of grace) in
/// the window store `windowed-word-counts`, writing each new count to the topic
/// `windowed-word-counts` keyed `<word>@<window start ms>`.
///
/// ```
/// let topology = eddy_topologies::windowed_word_count().unwrap();
/// assert_eq!(topology.subtopologies().len(), 2);
/// ```
pub fn windowed_word_count() -> Result<Topology> {
    let b = StreamsBuilder::new();
    words(&b)
        .group_by(
            |_, word| word.clone(),
            Grouped::named("window-words").with(Serdes::string(), Serdes::string()),
        )
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_secs(1),
            Duration::from_secs(3600),
        ))
        .count(Materialized::named("windowed-word-counts"))
        .to_stream()
        .map(|w, count| (format!("{}@{}", w.key, w.start), count))
        .to(
            "windowed-word-counts",
            Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
        );
    b.build()
}

#[cfg(test)]
mod tests {
    use eddy_engine::testing::TopologyTestDriver;
    use eddy_engine::{Serdes, StreamsConfig};

    #[test]
    fn counts_words_across_lines() {
        let d =
            TopologyTestDriver::in_memory(super::word_count().unwrap(), StreamsConfig::new("wc"))
                .unwrap();
        let lines = d.input_topic("text-lines", Serdes::string(), Serdes::string());
        lines.pipe_str("1", "The cat, the hat".into(), 0).unwrap();
        let counts = d.key_value_store::<String, i64>("word-counts").unwrap();
        assert_eq!(counts.get(&"the".into()).unwrap(), Some(2));
        assert_eq!(counts.get(&"hat".into()).unwrap(), Some(1));
    }

    #[test]
    fn counts_words_per_window() {
        let d = TopologyTestDriver::in_memory(
            super::windowed_word_count().unwrap(),
            StreamsConfig::new("wwc"),
        )
        .unwrap();
        let lines = d.input_topic("text-lines", Serdes::string(), Serdes::string());
        lines.pipe_str("1", "the cat".into(), 100).unwrap();
        lines.pipe_str("2", "the hat".into(), 900).unwrap();
        lines.pipe_str("3", "the".into(), 1_000).unwrap();
        let out = d.output_topic(
            "windowed-word-counts",
            Serdes::string(),
            Serdes::nullable(Serdes::i64()),
        );
        let last: std::collections::BTreeMap<String, Option<i64>> =
            out.read_key_values().unwrap().into_iter().collect();
        assert_eq!(last["the@0"], Some(2));
        assert_eq!(last["the@1000"], Some(1));
        assert_eq!(last["hat@0"], Some(1));
    }
}
