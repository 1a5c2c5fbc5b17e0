//! Compaction of `cleanup.policy=compact` topics: below the last stable offset, only the newest
//! record of each key stays (tombstones included), with its offset; aborted records and
//! transaction markers go. The last batch of a log stays as it is (Kafka's active segment). The log cleaner runs in the background and on demand.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use crate::log::{PartitionLog, StoredBatch};
use crate::Shared;

impl PartitionLog {
    /// Where compaction stops: the last stable offset, or the start of the last batch if that
    /// is lower. The last batch is never compacted, as Kafka never cleans the active segment:
    /// the log keeps its end (a client's position reaches the high watermark by reading it, even
    /// when it is a transaction marker).
    pub fn compaction_boundary(&self) -> i64 {
        let stable = self.last_stable_offset();
        self.batches
            .last()
            .map_or(stable, |b| stable.min(b.base_offset))
    }

    /// Compacts everything below [`PartitionLog::compaction_boundary`]. Returns how many records
    /// it removed.
    pub fn compact(&mut self) -> usize {
        let boundary = self.compaction_boundary();
        let split = self.batches.partition_point(|b| b.last_offset < boundary);
        let (old, rest) = self.batches.split_at(split);
        // Decode the decided part, dropping markers and aborted records. A stored entry may hold
        // several wire batches (an earlier compaction's output): decode them all. One that does
        // not decode is kept as it is rather than lost.
        let mut kept_batches: Vec<Vec<Record>> = Vec::new();
        let mut verbatim: Vec<StoredBatch> = Vec::new();
        let mut newest: HashMap<Bytes, i64> = HashMap::new();
        for batch in old {
            if batch.control {
                continue;
            }
            let mut bytes = batch.bytes.clone();
            let Ok(sets) = RecordBatchDecoder::decode_all(&mut bytes) else {
                verbatim.push(batch.clone());
                continue;
            };
            let records: Vec<Record> = sets
                .into_iter()
                .flat_map(|set| set.records)
                .filter(|r| {
                    !self.aborted.iter().any(|(pid, first, last)| {
                        *pid == r.producer_id && (*first..=*last).contains(&r.offset)
                    })
                })
                .collect();
            for r in &records {
                if let Some(k) = &r.key {
                    newest.insert(k.clone(), r.offset);
                }
            }
            kept_batches.push(records);
        }
        // A key written again in the kept tail needs none of its older values — if the tail is
        // decided and not aborted (an open transaction may still abort, and its values with it).
        let stable = self.last_stable_offset();
        if let Some(tail) = rest
            .first()
            .filter(|b| !b.control && b.last_offset < stable)
        {
            let mut bytes = tail.bytes.clone();
            if let Ok(sets) = RecordBatchDecoder::decode_all(&mut bytes) {
                for r in sets.into_iter().flat_map(|set| set.records) {
                    let aborted = self.aborted.iter().any(|(pid, first, last)| {
                        *pid == r.producer_id && (*first..=*last).contains(&r.offset)
                    });
                    if let (Some(k), false) = (&r.key, aborted) {
                        newest.insert(k.clone(), r.offset);
                    }
                }
            }
        }
        let before: usize = kept_batches.iter().map(Vec::len).sum();
        let mut rebuilt = verbatim;
        let mut kept = 0;
        for records in kept_batches {
            let survivors: Vec<Record> = records
                .into_iter()
                .filter(|r| r.key.as_ref().and_then(|k| newest.get(k)) == Some(&r.offset))
                .collect();
            let base = survivors.first().map_or(0, |r| r.offset);
            let survivors: Vec<Record> = survivors
                .into_iter()
                .map(|mut r| {
                    r.transactional = false;
                    r.producer_id = -1;
                    r.producer_epoch = -1;
                    // Sequences that follow the offsets keep the survivors in one wire batch
                    // (the encoder splits where offset − sequence changes).
                    r.sequence = (r.offset - base) as i32;
                    r
                })
                .collect();
            kept += survivors.len();
            let (Some(first), Some(last)) = (survivors.first(), survivors.last()) else {
                continue;
            };
            let (base, last_offset) = (first.offset, last.offset);
            let max_timestamp = survivors.iter().map(|r| r.timestamp).max().unwrap_or(-1);
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            };
            if RecordBatchEncoder::encode(&mut buf, survivors.iter(), &options).is_err() {
                return 0; // leave the log as it was
            }
            rebuilt.push(StoredBatch {
                base_offset: base,
                last_offset,
                control: false,
                max_timestamp,
                bytes: buf.freeze(),
            });
        }
        let rest = rest.to_vec();
        rebuilt.sort_by_key(|b| b.base_offset);
        self.batches = rebuilt;
        self.batches.extend(rest);
        self.aborted.retain(|(_, _, last)| *last >= boundary);
        before - kept
    }
}

/// Compacts every compacted topic now. Returns the records removed.
pub(crate) fn compact_all(shared: &Shared) -> usize {
    let mut state = shared.state.write();
    let mut removed = 0;
    let mut compacted_parts = Vec::new();
    for (name, topic) in state.topics.iter_mut() {
        let compacted = topic
            .configs
            .get("cleanup.policy")
            .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact"));
        if compacted {
            for (i, p) in topic.partitions.iter_mut().enumerate() {
                let boundary = p.compaction_boundary();
                let n = p.compact();
                if n > 0 {
                    compacted_parts.push((name.clone(), i as i32, boundary));
                }
                removed += n;
            }
        }
    }
    for (topic, partition, boundary) in compacted_parts {
        state.journal_compaction(&topic, partition, boundary);
    }
    removed
}

/// The log cleaner: compacts compacted topics every `interval`.
pub(crate) async fn log_cleaner(shared: Arc<Shared>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let removed = compact_all(&shared);
        if removed > 0 {
            tracing::debug!("log cleaner removed {removed} records");
        }
    }
}
