//! A task's buffered input (Kafka Streams' `PartitionGroup`): one queue per input partition,
//! each record with its extracted timestamp. A task that reads several partitions (a join, a
//! merge) takes the record with the lowest timestamp among the partitions' heads, so results do
//! not depend on which fetch came first. While one of its partitions is empty, the task asks
//! how far that partition's consumer is behind the end the broker last reported (its fetched
//! lag, as Kafka Streams does since KIP-695):
//!
//! 1. **Behind** (lag > 0): records are at the broker and on their way; the task waits for
//!    them, however long that takes, since processing now would, say, join a stream record
//!    against a table that has not read its older rows yet.
//! 2. **Caught up** (lag 0): nothing is known to be coming; the task waits `max.task.idle.ms`
//!    for more (0, the default, not at all), then goes on without the partition.
//! 3. **Unknown** (the partition has not been fetched yet, or no statistics came yet): the task
//!    waits up to [`UNKNOWN_LAG_WAIT_MS`] (or `max.task.idle.ms` if longer) for the lag to
//!    become known, then goes on.
//!
//! `max.task.idle.ms = -1` skips all of this: a task processes whatever it has.
//!
//! ```text
//! left:  [l@100, l@300]      next() -> l@100, then r@200, then l@300
//! right: [r@200]             then, right empty: wait while it is behind, then up to
//!                            max.task.idle.ms once it is caught up, then l@... alone
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::task::core::InputRecord;

/// How long a task waits for the lag of an empty partition to become known.
pub(crate) const UNKNOWN_LAG_WAIT_MS: i64 = 2_000;

/// What an empty partition is waited for as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Step 2 of the module doc.
    CaughtUp,
    /// Step 3.
    UnknownLag,
}

#[derive(Debug, Default)]
struct Queue {
    records: VecDeque<(i64, InputRecord)>,
    /// Since when the queue has been empty, caught up or of unknown lag, while another had
    /// records (what its wait is measured from); cleared when it gets records or falls behind.
    waiting_since: Option<(Instant, Wait)>,
}

#[derive(Debug, Default)]
pub(crate) struct PartitionGroup {
    /// Per input topic (the task's partition of it): (timestamp, record), in offset order.
    queues: BTreeMap<String, Queue>,
}

impl PartitionGroup {
    /// A group over the task's input topics.
    pub fn new(topics: impl IntoIterator<Item = String>) -> Self {
        Self {
            queues: topics.into_iter().map(|t| (t, Queue::default())).collect(),
        }
    }

    /// Buffers a record with its extracted timestamp.
    pub fn add(&mut self, timestamp: i64, record: InputRecord) {
        let queue = self.queues.entry(record.topic.clone()).or_default();
        // The partition waited for has data: its next empty spell is waited for anew.
        queue.waiting_since = None;
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
    /// topic in name order on a tie), once every partition has one or every empty one may be
    /// gone without (see the module doc). `fetched_lag(topic)` is how many records of the
    /// task's partition of `topic` are at the broker and not yet buffered, if known.
    pub fn next(
        &mut self,
        now: Instant,
        max_idle_ms: i64,
        fetched_lag: &mut dyn FnMut(&str) -> Option<i64>,
    ) -> Option<(i64, InputRecord)> {
        let topic = self
            .queues
            .iter()
            .filter_map(|(topic, q)| q.records.front().map(|(ts, _)| (*ts, topic)))
            .min_by_key(|(ts, _)| *ts)
            .map(|(_, topic)| topic.clone())?;
        if max_idle_ms >= 0 {
            let mut ready = true;
            for (topic, queue) in self.queues.iter_mut().filter(|(_, q)| q.records.is_empty()) {
                let (wait, wait_ms) = match fetched_lag(topic) {
                    Some(lag) if lag > 0 => {
                        queue.waiting_since = None;
                        ready = false;
                        continue;
                    }
                    Some(_) => (Wait::CaughtUp, max_idle_ms),
                    None => (Wait::UnknownLag, max_idle_ms.max(UNKNOWN_LAG_WAIT_MS)),
                };
                // A wait starts anew when the partition's lag becomes known (or unknown).
                let since = match queue.waiting_since {
                    Some((since, was)) if was == wait => since,
                    _ => queue.waiting_since.insert((now, wait)).0,
                };
                ready &= now.duration_since(since) >= Duration::from_millis(wait_ms.unsigned_abs());
            }
            if !ready {
                return None;
            }
        }
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

    fn caught_up(_: &str) -> Option<i64> {
        Some(0)
    }

    fn order(group: &mut PartitionGroup, now: Instant, idle: i64) -> Vec<(String, i64)> {
        std::iter::from_fn(|| group.next(now, idle, &mut caught_up))
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
        // With no idling, the last record goes once its partner partition is empty and
        // caught up.
        assert_eq!(
            order(&mut g, now, 0),
            [("left", 100), ("right", 200), ("left", 300), ("right", 400)]
                .map(|(t, ts)| (t.to_string(), ts))
        );
        assert_eq!(g.len(), 0);
    }

    #[test]
    fn an_empty_caught_up_partition_is_waited_for_up_to_max_task_idle() {
        let mut g = PartitionGroup::new(["left".to_string(), "right".to_string()]);
        g.add(100, record("left", 0));
        let start = Instant::now();
        let next = |g: &mut PartitionGroup, at: u64, idle| {
            g.next(start + Duration::from_millis(at), idle, &mut caught_up)
        };
        assert!(
            next(&mut g, 0, 1_000).is_none(),
            "waits for the empty partition"
        );
        assert!(next(&mut g, 999, 1_000).is_none());
        assert!(next(&mut g, 1_000, 1_000).is_some());
        g.add(200, record("left", 1));
        let mut behind = |_: &str| Some(5);
        assert!(g.next(start, -1, &mut behind).is_some(), "-1 never waits");
    }

    #[test]
    fn a_partition_behind_the_broker_is_waited_for_until_its_records_come() {
        let mut g = PartitionGroup::new(["clicks".to_string(), "rows".to_string()]);
        g.add(500, record("clicks", 0));
        let start = Instant::now();
        let mut lag = 3;
        for at in [0, 1_000, 60_000] {
            let now = start + Duration::from_millis(at);
            assert!(
                g.next(now, 100, &mut |_| Some(lag)).is_none(),
                "rows are at the broker: no click goes first ({at} ms)"
            );
        }
        g.add(400, record("rows", 0));
        lag = 0;
        let now = start + Duration::from_secs(61);
        let (_, first) = g.next(now, 100, &mut |_| Some(lag)).unwrap();
        assert_eq!(first.topic, "rows", "the older row goes first");
        assert!(
            g.next(now, 100, &mut |_| Some(lag)).is_none(),
            "caught up: max.task.idle.ms is waited from now"
        );
        let later = now + Duration::from_millis(100);
        assert!(g.next(later, 100, &mut |_| Some(lag)).is_some());
    }

    #[test]
    fn a_partition_of_unknown_lag_is_waited_for_a_bounded_time() {
        let mut g = PartitionGroup::new(["left".to_string(), "right".to_string()]);
        g.add(100, record("left", 0));
        let start = Instant::now();
        let mut unknown = |_: &str| None;
        assert!(
            g.next(start, 0, &mut unknown).is_none(),
            "right's first fetch may be on its way"
        );
        let bound = Duration::from_millis(UNKNOWN_LAG_WAIT_MS as u64);
        assert!(
            g.next(start + bound, 0, &mut unknown).is_some(),
            "but not for ever"
        );
        g.add(200, record("left", 1));
        assert!(
            g.next(start + bound, 0, &mut caught_up).is_some(),
            "known to be caught up: no wait with max.task.idle.ms 0"
        );
    }
}
