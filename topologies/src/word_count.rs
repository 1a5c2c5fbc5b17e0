//! `word-count`: the classic first topology, a repartition and a count.

use eddy_engine::{
    Consumed, Grouped, Materialized, Produced, Result, Serdes, StreamsBuilder, Topology,
};

/// Splits lines of `text-lines` into lowercase words and counts them per word in the store
/// `word-counts`, writing each new count to the topic `word-counts`.
///
/// ```
/// let topology = eddy_topologies::word_count().unwrap();
/// assert_eq!(topology.subtopologies().len(), 2);
/// ```
pub fn word_count() -> Result<Topology> {
    let b = StreamsBuilder::new();
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
}
