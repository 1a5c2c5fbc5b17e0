//! Restoring a task's logged stores before it processes anything: each store's changelog
//! partition is read (read_committed) from the task's checkpoint to its end, and the records are
//! committed to local state in batches, each with the checkpoint it reaches — so an interrupted
//! restore resumes where it stopped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use eddy_state::StateError;

use crate::error::{EngineError, Result};
use crate::task::StreamTask;
use crate::topology::Topology;

/// Records restored between two local commits.
const RESTORE_BATCH: u64 = 10_000;

/// How long a restore waits for the changelog's open transactions to be decided. A dead
/// worker's transaction stays open until `transaction.timeout.ms` aborts it.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long nothing must arrive, once every transaction below the end is decided, before a
/// restore whose position stopped short of the end (in front of markers) is complete.
const QUIET: Duration = Duration::from_millis(300);

/// A stream thread's restore clients, made on its first restore and kept for the next ones.
pub(crate) struct Restorer {
    application_id: String,
    /// Reads the changelogs, read_committed.
    consumer: BaseConsumer,
    /// Asks for the changelogs' ends (see [`Restorer::restore_task`]).
    watermarks: BaseConsumer,
    /// The application is closing: a restore stops where it is (its progress is kept).
    shutdown: Arc<AtomicBool>,
}

impl Restorer {
    pub fn new(bootstrap: &str, application_id: &str, shutdown: Arc<AtomicBool>) -> Result<Self> {
        let client = |isolation: &str| -> Result<BaseConsumer> {
            ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", format!("{application_id}-restore"))
                .set("enable.auto.commit", "false")
                .set("isolation.level", isolation)
                // The client moves from partition to partition: a fetch parked at the end of the
                // last one (500 ms by default) would hold up the next.
                .set("fetch.wait.max.ms", "10")
                // Should the log's start pass the offset a restore asks for (retention, deleted
                // records), the broker says out of range and the client goes to the new start.
                .set("auto.offset.reset", "earliest")
                .create()
                .map_err(|e| EngineError::Config {
                    key: "bootstrap.servers".into(),
                    reason: e.to_string(),
                })
        };
        Ok(Self {
            application_id: application_id.to_string(),
            consumer: client("read_committed")?,
            // The end to restore to is the high watermark, not the last stable offset that a
            // read_committed client is told: records committed after a transaction that is
            // still open (a killed worker's) belong to the state too, so the restore waits for
            // that transaction to be decided rather than stopping in front of it.
            watermarks: client("read_uncommitted")?,
            shutdown,
        })
    }

    /// Brings every logged store of `task` up to the end of its changelog partition. Returns
    /// the number of records read: only what the checkpoint did not already cover.
    ///
    /// A checkpoint outside the changelog's offsets means the local state belongs to another
    /// incarnation of the topic: a [`StateError::Corrupted`] error, which makes the caller wipe
    /// it.
    pub fn restore_task(
        &self,
        task: &mut StreamTask,
        topology: &Topology,
        partition: i32,
    ) -> Result<u64> {
        let restored = self.restore_stores(task, topology, partition);
        // Stop fetching until the next restore.
        let _ = self.consumer.unassign();
        restored
    }

    fn restore_stores(
        &self,
        task: &mut StreamTask,
        topology: &Topology,
        partition: i32,
    ) -> Result<u64> {
        let (application_id, consumer, watermarks) = (
            self.application_id.as_str(),
            &self.consumer,
            &self.watermarks,
        );
        let shutdown = self.shutdown.as_ref();
        let stores = task.logged_stores(topology);
        if stores.is_empty() {
            return Ok(0);
        }
        let checkpoint = task.checkpoint()?;
        let mut restored = 0u64;
        let started = Instant::now();
        for store in stores {
            let topic = Topology::changelog_topic(application_id, &store);
            let query = || {
                watermarks
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .map_err(|e| {
                        EngineError::TaskMigrated(format!("changelog {topic}-{partition}: {e}"))
                    })
            };
            let from = checkpoint.changelog_offsets.get(&store).copied();
            let (mut low, mut high) = query()?;
            // A query that librdkafka retried after an error has come back with the end in
            // place of the start (seen with a refused ListOffsets): an empty-looking changelog
            // that a restore without a checkpoint would skip is asked about once more.
            if from.is_none() && low == high && high > 0 {
                (low, high) = query()?;
            }
            let (low, high) = (low.min(high), low.max(high));
            if let Some(c) = from {
                if c > high || c < low {
                    return Err(EngineError::State(StateError::Corrupted {
                        store: store.clone(),
                        reason: format!(
                        "checkpoint {c} is outside changelog {topic}-{partition} [{low}, {high}]"
                    ),
                    }));
                }
            }
            let start = from.unwrap_or(low);
            if start >= high {
                continue;
            }
            let n = restore_store(
                task,
                consumer,
                shutdown,
                &store,
                (&topic, partition),
                start,
                high,
            )?;
            task.count_restored(&store, n);
            tracing::info!(task = %task.id(), store, from = start, to = high, restored = n, "restored store");
            restored += n;
        }
        tracing::info!(task = %task.id(), restored, elapsed_ms = started.elapsed().as_millis() as u64, "restored state");
        Ok(restored)
    }
}

/// Reads `topic`-`partition` from `start` until its position reaches `high` into `store`.
/// read_committed holds the position at an open transaction until it is decided. On
/// `shutdown` it stops with an error (the task is not opened), keeping what it restored.
fn restore_store(
    task: &mut StreamTask,
    consumer: &BaseConsumer,
    shutdown: &AtomicBool,
    store: &str,
    (topic, partition): (&str, i32),
    start: i64,
    high: i64,
) -> Result<u64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(
        topic,
        partition,
        // Not `Offset::Beginning`: resolving it costs the client a round of offset queries
        // per partition (full restores ran at a third of the speed).
        Offset::Offset(start),
    )
    .map_err(|e| EngineError::TaskMigrated(e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| EngineError::TaskMigrated(e.to_string()))?;
    let mut restored = 0u64;
    let mut next = start;
    let mut uncommitted = 0u64;
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    let mut waiting_logged = false;
    let mut idle = Instant::now();
    let mut stable_at: Option<Instant> = None;
    loop {
        if shutdown.load(Ordering::SeqCst) {
            task.commit_state(&BTreeMap::from([(store.to_string(), next)]))?;
            return Err(EngineError::TaskMigrated(format!(
                "closing: restore of {topic}-{partition} stopped at offset {next} of {high}"
            )));
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                task.restore_record(store, m.key().unwrap_or_default(), m.payload())?;
                restored += 1;
                uncommitted += 1;
                next = m.offset() + 1;
                if uncommitted >= RESTORE_BATCH {
                    task.commit_state(&BTreeMap::from([(store.to_string(), next)]))?;
                    uncommitted = 0;
                }
                if next >= high {
                    break;
                }
            }
            Some(Err(e)) => {
                return Err(EngineError::TaskMigrated(format!("restoring {topic}: {e}")))
            }
            None => {
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|p| p.find_partition(topic, partition).map(|e| e.offset()));
                if let Some(Offset::Offset(o)) = position {
                    next = next.max(o);
                }
                if next >= high {
                    break;
                }
                // What is left below `high` may be transaction markers and aborted records,
                // which the client skips without moving its position. Once every transaction
                // below `high` is decided (the last stable offset has reached it) and nothing
                // more arrives, the restore is complete.
                if stable_at.is_none() && idle.elapsed() >= QUIET {
                    let (_, stable) = consumer
                        .fetch_watermarks(topic, partition, Duration::from_secs(10))
                        .map_err(|e| {
                            EngineError::TaskMigrated(format!("changelog {topic}-{partition}: {e}"))
                        })?;
                    if stable >= high {
                        stable_at = Some(Instant::now());
                    } else if !waiting_logged {
                        tracing::info!(
                            topic,
                            partition,
                            at = next,
                            stable,
                            end = high,
                            "restore waits for an open transaction on the changelog to be decided"
                        );
                        waiting_logged = true;
                    }
                }
                if stable_at.is_some_and(|at| at.elapsed() >= QUIET) && idle.elapsed() >= QUIET {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(EngineError::TaskMigrated(format!(
                        "restoring {topic}-{partition}: stuck at offset {next} of {high} for {RESTORE_TIMEOUT:?}"
                    )));
                }
            }
        }
    }
    task.commit_state(&BTreeMap::from([(store.to_string(), next)]))?;
    Ok(restored)
}
