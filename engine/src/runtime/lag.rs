//! Input lag of a stream thread, for progress output: the records in its assigned input
//! partitions that it has not read yet, from librdkafka's statistics (each partition's end —
//! the last stable offset under read_committed — minus the thread's position; librdkafka's own
//! `consumer_lag` counts from the committed offset, which a transactional commit does not tell
//! it). librdkafka's position moves past transaction markers once `poll` has handled them, so
//! a marker shows as one record of lag for at most a report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rdkafka::statistics::Statistics;

use crate::metrics::scrape::ScrapeSource;
use crate::runtime::Progress;

/// One thread's share of its application's lag.
pub(crate) struct InputLag {
    progress: Arc<Progress>,
    /// The thread reads read_committed: its end is the last stable offset.
    read_committed: bool,
    /// What this thread last added to `progress.lag`.
    reported: AtomicU64,
    /// Where each partition's lag goes for `/metrics`, under this thread's index.
    scrape: Option<(Arc<ScrapeSource>, usize)>,
}

impl InputLag {
    pub fn new(progress: Arc<Progress>, read_committed: bool) -> Self {
        Self {
            progress,
            read_committed,
            reported: AtomicU64::new(0),
            scrape: None,
        }
    }

    /// Also gives each partition's lag to `scrape`, as thread `thread`'s.
    pub fn with_scrape(mut self, scrape: Arc<ScrapeSource>, thread: usize) -> Self {
        self.scrape = Some((scrape, thread));
        self
    }

    /// Takes the lag from a statistics report: the sum over the partitions being fetched.
    pub fn record(&self, statistics: &Statistics) {
        let by_partition: BTreeMap<(String, i32), i64> = statistics
            .topics
            .iter()
            .flat_map(|(topic, t)| t.partitions.values().map(move |p| (topic, p)))
            .filter(|(_, p)| p.partition >= 0 && p.fetch_state == "active" && p.app_offset >= 0)
            .map(|(topic, p)| {
                let end = if self.read_committed {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                ((topic.clone(), p.partition), (end - p.app_offset).max(0))
            })
            .collect();
        let lag: i64 = by_partition.values().sum();
        if let Some((scrape, thread)) = &self.scrape {
            scrape.set_lag(*thread, by_partition);
        }
        self.report(u64::try_from(lag).unwrap_or(0));
    }

    fn report(&self, lag: u64) {
        let before = self.reported.swap(lag, Ordering::Relaxed);
        // Threads share the counter: each adds the change of its own share (wrapping
        // arithmetic makes a decrease an add).
        self.progress
            .lag
            .fetch_add(lag.wrapping_sub(before), Ordering::Relaxed);
    }
}

impl Drop for InputLag {
    fn drop(&mut self) {
        self.report(0);
        if let Some((scrape, thread)) = &self.scrape {
            scrape.set_lag(*thread, BTreeMap::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_add_up_and_a_stopped_thread_takes_its_share_back() {
        let progress = Arc::new(Progress::default());
        let a = InputLag::new(Arc::clone(&progress), true);
        let b = InputLag::new(Arc::clone(&progress), false);
        a.report(10);
        b.report(5);
        assert_eq!(progress.lag.load(Ordering::Relaxed), 15);
        a.report(3);
        assert_eq!(progress.lag.load(Ordering::Relaxed), 8);
        drop(b);
        assert_eq!(progress.lag.load(Ordering::Relaxed), 3);
    }
}
