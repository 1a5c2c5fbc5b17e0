//! librdkafka's statistics, parsed off the stream thread.
//!
//! librdkafka hands a report (a JSON document of every broker, topic and partition) to the
//! thread that polls the consumer, every `STATISTICS_INTERVAL_MS`. Parsing it there costs the
//! stream thread a pause per report, so the listener only copies the bytes to a parser thread,
//! which updates the input lag and the partition ends:
//!
//! 1. `offer` numbers the report (on the stream thread, so in order with its seeks and
//!    assignments: `fetched_lag.rs`, step 5) and puts it in a one-report slot, replacing one
//!    not parsed yet: after a stall, when librdkafka hands over several at once, the newest
//!    wins.
//! 2. The parser thread takes the report from the slot, decodes it and records it in the lag
//!    and the ends (an end recorded from an older report than the last is ignored).
//! 3. Dropping the parser (with the listener and its consumer) stops the thread and waits for
//!    it, so nothing is recorded after the stream thread ends.
//!
//! A report recorded a moment late is like a report a moment old, which `fetched_lag.rs`
//! already allows: an end only grows, so an old one makes a task wait less, never for records
//! that do not exist.

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use rdkafka::statistics::Statistics;

use crate::runtime::fetched_lag::PartitionEnds;
use crate::runtime::lag::InputLag;

/// The report waiting to be parsed, and whether the parser is to stop.
#[derive(Default)]
struct Slot {
    waiting: Mutex<(Option<(u64, Vec<u8>)>, bool)>,
    ready: Condvar,
}

/// The stream thread's side of its statistics parser.
pub(crate) struct StatisticsParser {
    slot: Arc<Slot>,
    ends: Arc<PartitionEnds>,
    thread: Option<JoinHandle<()>>,
}

impl StatisticsParser {
    /// Starts the parser thread of stream thread `thread`.
    pub fn start(thread: usize, lag: InputLag, ends: Arc<PartitionEnds>) -> std::io::Result<Self> {
        let slot = Arc::new(Slot::default());
        let handle = {
            let (slot, ends) = (Arc::clone(&slot), Arc::clone(&ends));
            std::thread::Builder::new()
                .name(format!("eddy-statistics-{thread}"))
                .spawn(move || loop {
                    let (number, report) = {
                        let mut waiting = slot.waiting.lock();
                        loop {
                            if waiting.1 {
                                return;
                            }
                            if let Some(report) = waiting.0.take() {
                                break report;
                            }
                            slot.ready.wait(&mut waiting);
                        }
                    };
                    match serde_json::from_slice::<Statistics>(&report) {
                        Ok(statistics) => {
                            lag.record(&statistics);
                            ends.record(number, &statistics);
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable librdkafka statistics"),
                    }
                })?
        };
        Ok(Self {
            slot,
            ends,
            thread: Some(handle),
        })
    }

    /// Hands a report to the parser (module doc, step 1).
    pub fn offer(&self, report: &[u8]) {
        let number = self.ends.offer();
        self.slot.waiting.lock().0 = Some((number, report.to_vec()));
        self.slot.ready.notify_one();
    }
}

impl Drop for StatisticsParser {
    fn drop(&mut self) {
        self.slot.waiting.lock().1 = true;
        self.slot.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the statistics parser panicked");
            }
        }
    }
}
