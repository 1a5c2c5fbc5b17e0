//! The broker-free test driver, as Kafka Streams' `TopologyTestDriver`: pipe records into input
//! topics, read output topics and stores, advance the wall clock. Deterministic: one partition
//! per topic, repartition topics processed in line, a commit after every input record.

mod driver;

pub use driver::{TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
