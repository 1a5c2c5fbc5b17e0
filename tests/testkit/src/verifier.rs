//! Reading what a test's application wrote: a consumer assigned whole topics from the
//! beginning, with the isolation level the check needs.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// A consumer in group `group` with `isolation` (`read_committed` or `read_uncommitted`),
/// assigned every partition of the topics that `chosen` picks, from the beginning.
///
/// Panics when the broker cannot be reached: it is for tests.
pub fn consumer_from_beginning(
    bootstrap: &str,
    group: &str,
    isolation: &str,
    chosen: impl Fn(&str) -> bool,
) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", isolation)
        .create()
        .expect("a verifier consumer");
    let metadata = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| chosen(t.name())) {
        for p in t.partitions() {
            tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                .expect("a partition");
        }
    }
    c.assign(&tpl).expect("assignment");
    c
}
