//! A task's buffered input (Kafka Streams' `PartitionGroup`): one queue per input partition,
//! each record with its extracted timestamp. A task that reads several partitions (a join, a
//! merge) takes the record with the lowest timestamp among the partitions' heads, so results do
//! not depend on which fetch came first; while a partition is empty it waits up to
//! `max.task.idle.ms` for it (-1: never waits). A partition that has delivered nothing since
//! the task opened is waited for at least [`FIRST_FETCH_WAIT_MS`] (unless -1): its first fetch
//! may simply not have arrived yet (Kafka Streams waits for it to be fetched, knowing from the
//! fetch response that it is caught up; librdkafka does not tell the application that).
//!
//! ```text
//! left:  [l@100, l@300]      next() -> l@100, then r@200, then l@300
//! right: [r@200]             then, right empty: wait max.task.idle.ms, then r@400 or l@...
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::task::core::InputRecord;

/// How long a task waits for the first records of a partition that has delivered none yet.
pub(crate) const FIRST_FETCH_WAIT_MS: i64 = 500;

#[derive(Debug, Default)]
struct Queue {
    records: VecDeque<(i64, InputRecord)>,
    /// Whether the partition has delivered a record since the task opened.
    delivered: bool,
}

#[derive(Debug, Default)]
pub(crate) struct PartitionGroup {
    /// Per input topic (the task's partition of it): (timestamp, record), in offset order.
    queues: BTreeMap<String, Queue>,
    /// Since when a partition has been empty while another had records.
    idle_since: Option<Instant>,
}

impl PartitionGroup {
    /// A group over the task's input topics.
    pub fn new(topics: impl IntoIterator<Item = String>) -> Self {
        Self {
            queues: topics.into_iter().map(|t| (t, Queue::default())).collect(),
            idle_since: None,
        }
    }

    /// Buffers a record with its extracted timestamp.
    pub fn add(&mut self, timestamp: i64, record: InputRecord) {
        let queue = self.queues.entry(record.topic.clone()).or_default();
        if queue.records.is_empty() {
            // The partition waited for has data: the next empty spell is waited for anew.
            self.idle_since = None;
        }
        queue.delivered = true;
        queue.records.push_back((timestamp, record));
    }

    /// Records buffered for `topic`.
    pub fn queued(&self, topic: &str) -> usize {
        self.queues.get(topic).map_or(0, |q| q.records.len())
    }

    /// Records buffered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queues.values().map(|q| q.records.len()).sum()
    }

    /// The next record to process: the partition head with the lowest timestamp (the first
    /// topic in name order on a tie), once every partition has one, or once a partition has
    /// been empty for `max_idle_ms` (at once for 0 or -1; -1 also never starts waiting).
    pub fn next(&mut self, now: Instant, max_idle_ms: i64) -> Option<(i64, InputRecord)> {
        let mut lowest: Option<(&String, i64)> = None;
        let (mut any_empty, mut never_delivered) = (false, false);
        for (topic, queue) in &self.queues {
            match queue.records.front() {
                None => {
                    any_empty = true;
                    never_delivered |= !queue.delivered;
                }
                Some((ts, _)) if lowest.is_none_or(|(_, low)| *ts < low) => {
                    lowest = Some((topic, *ts));
                }
                Some(_) => {}
            }
        }
        let (topic, _) = lowest?;
        let wait_ms = match (max_idle_ms, never_delivered) {
            (ms, _) if ms < 0 => 0,
            (ms, true) => ms.max(FIRST_FETCH_WAIT_MS),
            (ms, false) => ms,
        };
        if any_empty && wait_ms > 0 {
            let since = *self.idle_since.get_or_insert(now);
            if now.duration_since(since) < Duration::from_millis(wait_ms.unsigned_abs()) {
                return None;
            }
        } else if !any_empty {
            self.idle_since = None;
        }
        let topic = topic.clone();
        self.queues.get_mut(&topic)?.records.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, offset: i64) -> InputRecord {
        InputRecord {
            topic: topic.into(),
            partition: 0,
            offset,
            key: None,
            value: None,
            timestamp: 0,
            headers: Default::default(),
        }
    }

    fn order(group: &mut PartitionGroup, now: Instant, idle: i64) -> Vec<(String, i64)> {
        std::iter::from_fn(|| group.next(now, idle))
            .map(|(ts, r)| (r.topic, ts))
            .collect()
    }

    #[test]
    fn heads_go_in_timestamp_order_across_partitions() {
        let mut g = PartitionGroup::new(["left".to_string(), "right".to_string()]);
        for (topic, ts) in [("left", 100), ("left", 300), ("right", 200), ("right", 400)] {
            g.add(ts, record(topic, ts));
        }
        let now = Instant::now();
        // With no idling, the last record goes once its partner partition is empty (it has
        // delivered records, so it is not waited for).
        assert_eq!(
            order(&mut g, now, 0),
            [("left", 100), ("right", 200), ("left", 300), ("right", 400)]
                .map(|(t, ts)| (t.to_string(), ts))
        );
        assert_eq!(g.len(), 0);
    }

    #[test]
    fn an_empty_partition_is_waited_for_up_to_max_task_idle() {
        let mut g = PartitionGroup::new(["left".to_string(), "right".to_string()]);
        g.add(100, record("left", 0));
        let start = Instant::now();
        assert!(
            g.next(start, 1_000).is_none(),
            "waits for the empty partition"
        );
        assert!(g.next(start + Duration::from_millis(999), 1_000).is_none());
        assert!(g
            .next(start + Duration::from_millis(1_000), 1_000)
            .is_some());
        g.add(200, record("left", 1));
        assert!(g.next(start, -1).is_some(), "-1 never waits");
    }

    #[test]
    fn a_partition_that_delivered_nothing_yet_is_waited_for_briefly() {
        let mut g = PartitionGroup::new(["left".to_string(), "right".to_string()]);
        g.add(100, record("left", 0));
        let start = Instant::now();
        assert!(
            g.next(start, 0).is_none(),
            "right's first fetch may be on its way"
        );
        let first_fetch = Duration::from_millis(FIRST_FETCH_WAIT_MS as u64);
        assert!(g.next(start + first_fetch, 0).is_some(), "but not for ever");
    }
}
