//! How many records of each input partition are at the broker and not yet handed to the stream
//! thread: a task's fetched lag, which decides whether it waits for an empty partition (see
//! `task/partition_group.rs`). It is the partition's end, from librdkafka's statistics (the
//! last stable offset under read_committed), minus the consumer's position. librdkafka moves
//! the position past transaction markers and aborted records, so a caught-up transactional
//! partition shows 0. Until a partition has delivered a record (after an assignment or a
//! seek) its position is where the consumer started: the committed offset, or the log start.
//!
//! The end may be a statistics interval old. The lag then errs low, never high, which only
//! makes a task wait less (as it would have before the records were produced).

use std::collections::HashMap;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::Offset;

/// A partition's offsets as the broker last reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct End {
    /// The offset after the last record a read can see.
    end: i64,
    log_start: i64,
}

/// The ends of the partitions a stream thread's consumer fetches, refreshed by each statistics
/// report.
#[derive(Debug)]
pub(crate) struct PartitionEnds {
    /// The consumer reads read_committed: its end is the last stable offset.
    read_committed: bool,
    ends: Mutex<HashMap<(String, i32), End>>,
}

impl PartitionEnds {
    pub fn new(read_committed: bool) -> Self {
        Self {
            read_committed,
            ends: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the ends from a statistics report (partitions not fetched yet have none).
    pub fn record(&self, statistics: &Statistics) {
        let mut ends = self.ends.lock();
        for (topic, t) in &statistics.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0) {
                let end = if self.read_committed {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                if end >= 0 && p.lo_offset >= 0 {
                    let end = End {
                        end,
                        log_start: p.lo_offset,
                    };
                    ends.insert((topic.clone(), p.partition), end);
                }
            }
        }
    }

    fn get(&self, topic: &str, partition: i32) -> Option<End> {
        self.ends
            .lock()
            .get(&(topic.to_string(), partition))
            .copied()
    }

    #[cfg(test)]
    fn set(&self, topic: &str, partition: i32, end: i64, log_start: i64) {
        let end = End { end, log_start };
        self.ends.lock().insert((topic.to_string(), partition), end);
    }
}

/// A stream thread's view of its partitions' fetched lag.
#[derive(Debug)]
pub(crate) struct FetchedLag {
    ends: std::sync::Arc<PartitionEnds>,
    /// Where the consumer started on each assigned partition: the committed offset, or `None`
    /// for the log start (`auto.offset.reset=earliest`).
    starts: HashMap<(String, i32), Option<i64>>,
}

impl FetchedLag {
    pub fn new(ends: std::sync::Arc<PartitionEnds>) -> Self {
        Self {
            ends,
            starts: HashMap::new(),
        }
    }

    /// The consumer starts (or, after a seek, starts again) on a partition from `offset`.
    pub fn started(&mut self, topic: &str, partition: i32, offset: Option<i64>) {
        self.starts.insert((topic.to_string(), partition), offset);
    }

    /// The partition is no longer assigned.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.starts.remove(&(topic.to_string(), partition));
    }

    /// The lag of `partition` of `topic`, given the consumer's position there (`None`: no record
    /// delivered since it started).
    fn lag(&self, topic: &str, partition: i32, position: Option<i64>) -> Option<i64> {
        let end = self.ends.get(topic, partition)?;
        let position = position
            .or_else(|| self.starts.get(&(topic.to_string(), partition)).copied()?)
            .unwrap_or(end.log_start)
            .max(end.log_start);
        Some((end.end - position).max(0))
    }
}

/// The fetched lag during one processing round: the consumer's positions are read once, when
/// a task first needs one.
#[derive(Default)]
pub(crate) struct LagRound {
    positions: Option<HashMap<(String, i32), i64>>,
}

impl LagRound {
    pub fn lag<C: ConsumerContext>(
        &mut self,
        fetched: &FetchedLag,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> Option<i64> {
        let positions = self
            .positions
            .get_or_insert_with(|| match consumer.position() {
                Ok(tpl) => tpl
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                        _ => None,
                    })
                    .collect(),
                Err(e) => {
                    tracing::debug!("reading the consumer's positions: {e}");
                    HashMap::new()
                }
            });
        let position = positions.get(&(topic.to_string(), partition)).copied();
        fetched.lag(topic, partition, position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lag_counts_from_the_position_or_where_the_consumer_started() {
        let ends = Arc::new(PartitionEnds::new(true));
        let mut fetched = FetchedLag::new(Arc::clone(&ends));
        assert_eq!(fetched.lag("t", 0, Some(5)), None, "no end reported yet");
        ends.set("t", 0, 100, 10);
        assert_eq!(fetched.lag("t", 0, Some(40)), Some(60));
        assert_eq!(fetched.lag("t", 0, Some(100)), Some(0));
        assert_eq!(
            fetched.lag("t", 0, Some(120)),
            Some(0),
            "an end a report old errs low"
        );
        assert_eq!(fetched.lag("t", 0, None), Some(90), "from the log start");
        fetched.started("t", 0, Some(70));
        assert_eq!(
            fetched.lag("t", 0, None),
            Some(30),
            "from the committed offset"
        );
        fetched.started("t", 0, Some(3));
        assert_eq!(
            fetched.lag("t", 0, None),
            Some(90),
            "a committed offset the log start passed reads from the start"
        );
        fetched.forget("t", 0);
        assert_eq!(fetched.lag("t", 0, None), Some(90));
    }
}
