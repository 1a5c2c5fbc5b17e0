//! Punctuation schedules of a task, aligned as Kafka Streams aligns them.

use crate::processor::ScheduleId;
use crate::time::PunctuationType;

#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub id: ScheduleId,
    pub node: usize,
    pub interval: i64,
    pub kind: PunctuationType,
    pub next: i64,
    pub cancelled: bool,
}

impl Schedule {
    /// Stream-time schedules are aligned to 0 (they fire on the first record); wall-clock ones
    /// fire one interval from now.
    pub fn new(
        id: ScheduleId,
        node: usize,
        interval: i64,
        kind: PunctuationType,
        now: i64,
    ) -> Self {
        let next = match kind {
            PunctuationType::StreamTime => 0,
            PunctuationType::WallClock => now.saturating_add(interval),
        };
        Self {
            id,
            node,
            interval: interval.max(1),
            kind,
            next,
            cancelled: false,
        }
    }

    /// Whether it is due at `time`; if so, moves `next` past `time` so that missed intervals
    /// fire once, not once each.
    pub fn fire_at(&mut self, time: i64) -> bool {
        if self.cancelled || time < self.next {
            return false;
        }
        let missed = (time - self.next) / self.interval;
        self.next += (missed + 1) * self.interval;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_time_schedules_align_to_zero_and_skip_missed_intervals() {
        let mut s = Schedule::new(ScheduleId(1), 0, 10, PunctuationType::StreamTime, 0);
        assert!(s.fire_at(3));
        assert!(!s.fire_at(9));
        assert!(s.fire_at(10));
        assert!(s.fire_at(55));
        assert_eq!(s.next, 60);
    }

    #[test]
    fn wall_clock_schedules_start_one_interval_out() {
        let mut s = Schedule::new(ScheduleId(1), 0, 100, PunctuationType::WallClock, 1_000);
        assert!(!s.fire_at(1_099));
        assert!(s.fire_at(1_100));
    }
}
