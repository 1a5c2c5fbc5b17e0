//! librdkafka's statistics, parsed off the stream thread.
//!
//! librdkafka hands a report (a JSON document of every broker, topic and partition) to the
//! thread that polls the consumer, every `STATISTICS_INTERVAL_MS`. Parsing it there costs the
//! stream thread a pause per report, so the listener only copies the bytes to a parser thread,
//! which updates the input lag and the partition ends:
//!
//! 1. `offer` copies a report into a one-slot channel; a report that finds the slot full
//!    replaces nothing and is dropped, as each report replaces the previous one whole.
//! 2. The parser thread decodes it and records it in the lag and the ends.
//! 3. The thread ends when the listener (and so the consumer) is dropped.
//!
//! A report recorded a moment late is like a report a moment old, which `fetched_lag.rs`
//! already allows: an end only grows, so an old one makes a task wait less, never for records
//! that do not exist.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use rdkafka::statistics::Statistics;

use crate::runtime::fetched_lag::PartitionEnds;
use crate::runtime::lag::InputLag;

/// The stream thread's side of its statistics parser.
pub(crate) struct StatisticsParser {
    reports: SyncSender<Vec<u8>>,
}

impl StatisticsParser {
    /// Starts the parser thread of stream thread `thread`.
    pub fn start(thread: usize, lag: InputLag, ends: Arc<PartitionEnds>) -> std::io::Result<Self> {
        let (reports, received) = sync_channel::<Vec<u8>>(1);
        std::thread::Builder::new()
            .name(format!("eddy-statistics-{thread}"))
            .spawn(move || {
                for report in received {
                    match serde_json::from_slice::<Statistics>(&report) {
                        Ok(statistics) => {
                            lag.record(&statistics);
                            ends.record(&statistics);
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable librdkafka statistics"),
                    }
                }
            })?;
        Ok(Self { reports })
    }

    /// Hands a report to the parser (module doc, step 1).
    pub fn offer(&self, report: &[u8]) {
        match self.reports.try_send(report.to_vec()) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }
}
