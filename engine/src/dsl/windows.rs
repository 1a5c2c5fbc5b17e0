//! Window definitions: tumbling and hopping time windows, sliding windows, session windows and
//! join windows, each with a grace period, plus the emit strategy of windowed aggregations.

use std::time::Duration;

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// When a windowed aggregation sends its results downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitStrategy {
    /// Every update (collapsed per commit by the store's cache).
    #[default]
    OnWindowUpdate,
    /// Once per window, with its final value, when stream time passes its end plus grace.
    OnWindowClose,
}

/// Fixed-size windows `[start, start + size)`, tumbling (advance = size) or hopping.
///
/// ```
/// use std::time::Duration;
/// use eddy_engine::TimeWindows;
/// let w = TimeWindows::of_size_and_grace(Duration::from_secs(10), Duration::ZERO)
///     .advance_by(Duration::from_secs(5));
/// assert_eq!(w.windows_for(12_000), vec![5_000, 10_000]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    pub size_ms: i64,
    pub advance_ms: i64,
    pub grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` with no grace: late records are dropped at once.
    pub fn of_size_with_no_grace(size: Duration) -> Self {
        Self::of_size_and_grace(size, Duration::ZERO)
    }
    /// Tumbling windows of `size` accepting records up to `grace` after a window's end.
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Self {
        let size_ms = ms(size).max(1);
        Self {
            size_ms,
            advance_ms: size_ms,
            grace_ms: ms(grace),
        }
    }
    /// Hopping windows: a new window every `advance` (clamped to `1..=size`).
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance_ms = ms(advance).clamp(1, self.size_ms);
        self
    }
    /// Starts of the windows that contain `ts` (Kafka Streams' `windowsFor`), oldest first.
    pub fn windows_for(&self, ts: i64) -> Vec<i64> {
        let mut start =
            ((ts - self.size_ms + self.advance_ms).max(0) / self.advance_ms) * self.advance_ms;
        let mut out = Vec::new();
        while start <= ts {
            out.push(start);
            start += self.advance_ms;
        }
        out
    }
}

/// Kafka Streams' `SlidingWindows`: windows of a fixed time difference, `[start, start + d]`
/// with both ends inclusive, created where records are, so that every distinct set of records
/// within `d` of each other has its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    pub time_difference_ms: i64,
    pub grace_ms: i64,
}

impl SlidingWindows {
    /// Sliding windows of `time_difference`, accepting records up to `grace` late.
    pub fn of_time_difference_and_grace(time_difference: Duration, grace: Duration) -> Self {
        Self {
            time_difference_ms: ms(time_difference).max(1),
            grace_ms: ms(grace),
        }
    }
    /// Sliding windows with no grace.
    pub fn of_time_difference_with_no_grace(time_difference: Duration) -> Self {
        Self::of_time_difference_and_grace(time_difference, Duration::ZERO)
    }
}

/// Session windows: activity of a key separated by less than the inactivity gap is one session
/// `[first, last]`; a record that bridges two sessions merges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub gap_ms: i64,
    pub grace_ms: i64,
}

impl SessionWindows {
    /// Sessions closed by `gap` of inactivity, accepting records up to `grace` late.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        Self {
            gap_ms: ms(gap).max(1),
            grace_ms: ms(grace),
        }
    }
    /// Sessions with no grace.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Self {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }
}

/// The window of a stream–stream join: a left record at `t` joins right records in
/// `[t - before, t + after]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    pub before_ms: i64,
    pub after_ms: i64,
    pub grace_ms: i64,
}

impl JoinWindows {
    /// Records join when their times differ by at most `difference`; no grace.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }
    /// Records join when their times differ by at most `difference`, accepting late records up
    /// to `grace`.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        Self {
            before_ms: ms(difference),
            after_ms: ms(difference),
            grace_ms: ms(grace),
        }
    }
    /// Sets how far before a left record a right record may be.
    pub fn before(mut self, before: Duration) -> Self {
        self.before_ms = ms(before);
        self
    }
    /// Sets how far after a left record a right record may be.
    pub fn after(mut self, after: Duration) -> Self {
        self.after_ms = ms(after);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_hold_each_time_once() {
        let w = TimeWindows::of_size_with_no_grace(Duration::from_millis(10));
        assert_eq!(w.windows_for(0), vec![0]);
        assert_eq!(w.windows_for(9), vec![0]);
        assert_eq!(w.windows_for(10), vec![10]);
    }

    #[test]
    fn hopping_windows_overlap_and_skip_negative_starts() {
        let w = TimeWindows::of_size_with_no_grace(Duration::from_millis(10))
            .advance_by(Duration::from_millis(3));
        assert_eq!(w.windows_for(2), vec![0]);
        assert_eq!(w.windows_for(10), vec![3, 6, 9]);
        assert_eq!(w.windows_for(12), vec![3, 6, 9, 12]);
    }
}
