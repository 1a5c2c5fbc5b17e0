//! How many records of each input partition are at the broker and not yet handed to the stream
//! thread: a task's fetched lag, which decides whether it waits for an empty partition (see
//! `task/partition_group.rs`).
//!
//! 1. The **end** comes from librdkafka's statistics (every `STATISTICS_INTERVAL_MS`): the last
//!    stable offset under read_committed, the high watermark otherwise, of each partition the
//!    consumer is fetching. A report replaces the previous one whole, so a partition that is
//!    no longer fetched has no end (its lag is unknown, not stale).
//! 2. The **position** is the offset after the last record the thread was handed; before any
//!    (after an assignment or a seek), where the consumer started: the committed offset, the
//!    log start when nothing is committed, unknown when the committed offset could not be
//!    read.
//! 3. Records between the two may be transaction markers or aborted records, which librdkafka
//!    skips without handing them over. Only then is the consumer's own position asked (once a
//!    round): librdkafka moves it past markers and aborted records.
//! 4. An end behind the position is older than what the thread has seen (a report from before
//!    a rebalance, say): the lag is unknown.
//! 5. After the consumer starts (or starts again) on a partition, only a report offered after
//!    that counts: each report gets a number when the stream thread is handed it, and an end
//!    from a report numbered before the start is unknown lag. (Before a rewind the thread may
//!    have seen records past an old end; forgetting them must not make the old end look
//!    caught up.)
//!
//! The end may be a report old, so the lag can miss records produced since; that only makes a
//! task wait less, as it would have had it run a moment earlier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Per topic, per partition (looked up by `&str`, without building a key).
type ByPartition<T> = HashMap<String, HashMap<i32, T>>;

fn get<'a, T>(map: &'a ByPartition<T>, topic: &str, partition: i32) -> Option<&'a T> {
    map.get(topic)?.get(&partition)
}

/// The ends of the partitions a stream thread's consumer fetches, as of the last statistics
/// report.
#[derive(Debug)]
pub(crate) struct PartitionEnds {
    /// The consumer reads read_committed: its end is the last stable offset.
    read_committed: bool,
    /// How many reports the stream thread has been handed (module doc, 5).
    offered: AtomicU64,
    /// The ends, and the number of the report they come from.
    ends: Mutex<(u64, ByPartition<End>)>,
}

impl PartitionEnds {
    pub fn new(read_committed: bool) -> Self {
        Self {
            read_committed,
            offered: AtomicU64::new(0),
            ends: Mutex::new((0, HashMap::new())),
        }
    }

    /// Numbers a report the stream thread was just handed (module doc, 5).
    pub fn offer(&self) -> u64 {
        self.offered.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// How many reports the stream thread has been handed so far.
    fn offered(&self) -> u64 {
        self.offered.load(Ordering::SeqCst)
    }

    /// Takes the ends of the partitions being fetched from report number `report`; an older
    /// report than the one recorded changes nothing.
    pub fn record(&self, report: u64, statistics: &Statistics) {
        let mut ends: ByPartition<End> = HashMap::new();
        for (topic, t) in &statistics.topics {
            for p in t.partitions.values() {
                let end = if self.read_committed {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                if p.partition >= 0 && p.fetch_state == "active" && end >= 0 && p.lo_offset >= 0 {
                    let end = End {
                        end,
                        log_start: p.lo_offset,
                    };
                    ends.entry(topic.clone())
                        .or_default()
                        .insert(p.partition, end);
                }
            }
        }
        let mut recorded = self.ends.lock();
        if report > recorded.0 {
            *recorded = (report, ends);
        }
    }

    /// A partition's end and the number of the report it comes from.
    fn get(&self, topic: &str, partition: i32) -> Option<(u64, End)> {
        let recorded = self.ends.lock();
        get(&recorded.1, topic, partition).map(|end| (recorded.0, *end))
    }

    /// A report, offered now, that gives `topic`'s `partition` this end (and keeps the other
    /// ends).
    #[cfg(test)]
    fn set(&self, topic: &str, partition: i32, end: i64, log_start: i64) {
        let end = End { end, log_start };
        let report = self.offer();
        let mut recorded = self.ends.lock();
        recorded.0 = report;
        recorded
            .1
            .entry(topic.to_string())
            .or_default()
            .insert(partition, end);
    }
}

/// Where the consumer started reading a partition (at its assignment or a seek).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The committed offset.
    Committed(i64),
    /// Nothing is committed: the log start (`auto.offset.reset=earliest`).
    Earliest,
    /// The committed offset could not be read.
    Unknown,
}

impl Start {
    pub fn committed(offset: Option<i64>) -> Self {
        offset.map_or(Start::Earliest, Start::Committed)
    }
}

#[derive(Debug, Clone, Copy)]
struct Position {
    start: Start,
    /// Reports offered before the start (module doc, 5).
    reports_before: u64,
    /// The offset after the last record handed over since the start.
    delivered: Option<i64>,
}

/// A stream thread's view of its assigned partitions' fetched lag.
#[derive(Debug)]
pub(crate) struct FetchedLag {
    ends: std::sync::Arc<PartitionEnds>,
    positions: ByPartition<Position>,
}

impl FetchedLag {
    pub fn new(ends: std::sync::Arc<PartitionEnds>) -> Self {
        Self {
            ends,
            positions: HashMap::new(),
        }
    }

    /// The consumer starts (or, after a seek, starts again) reading a partition.
    pub fn started(&mut self, topic: &str, partition: i32, start: Start) {
        let position = Position {
            start,
            reports_before: self.ends.offered(),
            delivered: None,
        };
        self.positions
            .entry(topic.to_string())
            .or_default()
            .insert(partition, position);
    }

    /// The partition is no longer assigned.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        if let Some(partitions) = self.positions.get_mut(topic) {
            partitions.remove(&partition);
        }
    }

    /// A record at `offset` was handed to the thread.
    pub fn delivered(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self
            .positions
            .get_mut(topic)
            .and_then(|t| t.get_mut(&partition))
        {
            p.delivered = Some(offset + 1);
        }
    }

    /// The lag of `partition` of `topic` (module doc); `consumer_position` is librdkafka's
    /// position there, asked only when markers may lie between.
    fn lag(
        &self,
        topic: &str,
        partition: i32,
        consumer_position: &mut dyn FnMut() -> Option<i64>,
    ) -> Option<i64> {
        let (report, end) = self.ends.get(topic, partition)?;
        let known = get(&self.positions, topic, partition)?;
        if report <= known.reports_before {
            return None;
        }
        let position = match (known.delivered, known.start) {
            (Some(next), _) => next,
            (None, Start::Committed(o)) => o.max(end.log_start),
            (None, Start::Earliest) => end.log_start,
            (None, Start::Unknown) => consumer_position()?,
        };
        if position >= end.end {
            return (position == end.end).then_some(0);
        }
        match consumer_position() {
            Some(p) if p > end.end => None,
            Some(p) if p > position => Some(end.end - p),
            _ => Some(end.end - position),
        }
    }
}

/// The fetched lag during one processing round, in which no record is handed over: each
/// partition's lag is worked out once, and the consumer's positions read at most once.
#[derive(Default)]
pub(crate) struct LagRound {
    consumer_positions: Option<ByPartition<i64>>,
    lags: ByPartition<Option<i64>>,
}

impl LagRound {
    pub fn lag<C: ConsumerContext>(
        &mut self,
        fetched: &FetchedLag,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> Option<i64> {
        if let Some(lag) = get(&self.lags, topic, partition) {
            return *lag;
        }
        let positions = &mut self.consumer_positions;
        let mut consumer_position = || {
            let positions = positions.get_or_insert_with(|| read_positions(consumer));
            get(positions, topic, partition).copied()
        };
        let lag = fetched.lag(topic, partition, &mut consumer_position);
        self.lags
            .entry(topic.to_string())
            .or_default()
            .insert(partition, lag);
        lag
    }
}

fn read_positions<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> ByPartition<i64> {
    let mut positions: ByPartition<i64> = HashMap::new();
    match consumer.position() {
        Ok(tpl) => {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    positions
                        .entry(e.topic().to_string())
                        .or_default()
                        .insert(e.partition(), o);
                }
            }
        }
        Err(e) => tracing::debug!("reading the consumer's positions: {e}"),
    }
    positions
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn fixture() -> (Arc<PartitionEnds>, FetchedLag) {
        let ends = Arc::new(PartitionEnds::new(true));
        let fetched = FetchedLag::new(Arc::clone(&ends));
        (ends, fetched)
    }

    #[test]
    fn lag_counts_from_the_last_record_handed_over_or_where_the_consumer_started() {
        let (ends, mut fetched) = fixture();
        let mut unasked = || -> Option<i64> { panic!("no markers can lie between") };
        fetched.started("t", 0, Start::Earliest);
        assert_eq!(fetched.lag("t", 0, &mut unasked), None, "no end yet");
        ends.set("t", 0, 100, 10);
        let mut none = || None;
        assert_eq!(
            fetched.lag("t", 0, &mut none),
            Some(90),
            "from the log start"
        );
        fetched.started("t", 0, Start::Committed(70));
        ends.set("t", 0, 100, 10);
        assert_eq!(fetched.lag("t", 0, &mut none), Some(30), "from the commit");
        fetched.started("t", 0, Start::Committed(3));
        ends.set("t", 0, 100, 10);
        assert_eq!(
            fetched.lag("t", 0, &mut none),
            Some(90),
            "a committed offset the log start passed reads from the start"
        );
        fetched.delivered("t", 0, 99);
        assert_eq!(fetched.lag("t", 0, &mut unasked), Some(0));
        fetched.forget("t", 0);
        assert_eq!(fetched.lag("t", 0, &mut unasked), None, "not assigned");
        assert_eq!(fetched.lag("u", 0, &mut unasked), None);
    }

    #[test]
    fn markers_past_the_last_record_are_skipped_by_the_consumer_position() {
        let (ends, mut fetched) = fixture();
        fetched.started("t", 0, Start::Earliest);
        ends.set("t", 0, 11, 0);
        // Records 0..=9, then the commit marker at 10: the end is 11.
        fetched.delivered("t", 0, 9);
        assert_eq!(fetched.lag("t", 0, &mut || Some(11)), Some(0));
        assert_eq!(
            fetched.lag("t", 0, &mut || Some(10)),
            Some(1),
            "the marker not handled yet"
        );
        assert_eq!(
            fetched.lag("t", 0, &mut || None),
            Some(1),
            "no position: the marker might be a record"
        );
    }

    #[test]
    fn an_end_behind_what_the_thread_saw_or_an_unknown_start_is_unknown_lag() {
        let (ends, mut fetched) = fixture();
        fetched.started("t", 0, Start::Committed(80));
        ends.set("t", 0, 50, 0);
        assert_eq!(
            fetched.lag("t", 0, &mut || None),
            None,
            "a report from before another member committed past it"
        );
        fetched.started("t", 0, Start::Unknown);
        ends.set("t", 0, 50, 0);
        assert_eq!(fetched.lag("t", 0, &mut || None), None);
        assert_eq!(fetched.lag("t", 0, &mut || Some(50)), Some(0));
    }

    #[test]
    fn after_a_rewind_only_a_report_offered_since_counts() {
        let (ends, mut fetched) = fixture();
        fetched.started("t", 0, Start::Committed(120));
        ends.set("t", 0, 120, 0);
        assert_eq!(fetched.lag("t", 0, &mut || None), Some(0));
        // Records 120..=150 are handed over, the commit fails and the thread rewinds to
        // 120: the end of 120 is older than what it saw, not caught up.
        fetched.delivered("t", 0, 150);
        fetched.started("t", 0, Start::Committed(120));
        assert_eq!(fetched.lag("t", 0, &mut || None), None, "the old report");
        ends.set("t", 0, 151, 0);
        assert_eq!(
            fetched.lag("t", 0, &mut || None),
            Some(31),
            "a report since"
        );
        // A report numbered before the start, recorded late, changes nothing.
        let old = ends.offer();
        fetched.started("t", 0, Start::Committed(140));
        ends.set("t", 0, 151, 0);
        let recorded_before = ends.get("t", 0);
        ends.record(old, &Statistics::default());
        assert_eq!(
            ends.get("t", 0),
            recorded_before,
            "an older report is ignored"
        );
    }
}
