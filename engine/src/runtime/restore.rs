//! Restoring a task's logged stores from their changelog partitions (read_committed) before the
//! task processes anything.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{EngineError, Result};
use crate::task::StreamTask;
use crate::topology::Topology;

/// Reads each logged store's changelog partition from `from` (per store; the beginning when
/// absent) to its end and writes it into the task. Returns the records restored.
pub(crate) fn restore_task(
    task: &mut StreamTask,
    topology: &Topology,
    bootstrap: &str,
    application_id: &str,
    partition: i32,
) -> Result<u64> {
    let stores = task.logged_stores(topology);
    if stores.is_empty() {
        return Ok(0);
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{application_id}-restore"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| EngineError::Config {
            key: "bootstrap.servers".into(),
            reason: e.to_string(),
        })?;
    let mut restored = 0u64;
    let started = Instant::now();
    for store in stores {
        let topic = Topology::changelog_topic(application_id, &store);
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, Duration::from_secs(10))
            .map_err(|e| {
                EngineError::TaskMigrated(format!("changelog {topic}-{partition}: {e}"))
            })?;
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Beginning)
            .map_err(|e| EngineError::TaskMigrated(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| EngineError::TaskMigrated(e.to_string()))?;
        // read_committed stops at the last stable offset; markers take offsets too, so the end
        // is reached when the position passes the high watermark or nothing more comes.
        let mut idle = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    idle = Instant::now();
                    task.restore_record(&store, m.key().unwrap_or_default(), m.payload())?;
                    restored += 1;
                    if m.offset() + 1 >= high {
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
                        .and_then(|p| p.find_partition(&topic, partition).map(|e| e.offset()));
                    if matches!(position, Some(Offset::Offset(o)) if o >= high)
                        || idle.elapsed() > Duration::from_secs(2)
                    {
                        break;
                    }
                }
            }
        }
    }
    tracing::info!(task = %task.id(), restored, elapsed_ms = started.elapsed().as_millis() as u64, "restored state");
    Ok(restored)
}
