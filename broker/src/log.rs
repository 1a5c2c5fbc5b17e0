//! A partition's log: record batches (v2) as the producer sent them, with the base offset
//! rewritten, so that fetches return the bytes unchanged (compression included).

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;

/// One stored batch.
#[derive(Debug, Clone)]
pub(crate) struct StoredBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub control: bool,
    pub max_timestamp: i64,
    pub bytes: Bytes,
}

impl StoredBatch {
    /// A batch as stored (with its offsets), read back from the journal.
    pub fn from_stored(raw: &[u8]) -> Option<Self> {
        let batch = split_batches(raw).ok()?.pop()?;
        let base = i64::from_be_bytes(raw.get(0..8)?.try_into().ok()?);
        Some(Self {
            base_offset: base,
            last_offset: base + i64::from(batch.last_offset_delta),
            control: batch.control,
            max_timestamp: batch.max_timestamp,
            bytes: Bytes::copy_from_slice(raw),
        })
    }
}

/// A partition: its batches, the next offset (high watermark: one replica) and the log start,
/// plus the transactions open on it and the aborted ones (for read_committed fetches).
#[derive(Debug, Default)]
pub(crate) struct PartitionLog {
    pub batches: Vec<StoredBatch>,
    pub next_offset: i64,
    pub log_start_offset: i64,
    /// Producer id → first offset of its open transaction here.
    pub ongoing: std::collections::BTreeMap<i64, i64>,
    /// (producer id, first offset, offset of the abort marker) of each aborted transaction.
    pub aborted: Vec<(i64, i64, i64)>,
}

/// A batch checked and split out of a produce request, before it gets its offsets.
#[derive(Debug, Clone)]
pub(crate) struct IncomingBatch {
    pub record_count: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub control: bool,
    /// For a transaction marker: commit (`true`) or abort.
    pub marker_commit: Option<bool>,
    /// lastOffsetDelta of the header: the batch spans base ..= base + this.
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    pub bytes: Vec<u8>,
}

/// Splits `records` into batches, validating each one (magic 2, CRC) with the protocol codec.
pub(crate) fn split_batches(records: &[u8]) -> Result<Vec<IncomingBatch>, ResponseError> {
    let mut out = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        // Framing: baseOffset (8) + batchLength (4) + batchLength bytes.
        if rest.len() < 12 {
            return Err(ResponseError::CorruptMessage);
        }
        let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if len < 49 || rest.len() < 12 + len as usize {
            return Err(ResponseError::CorruptMessage);
        }
        let (raw, tail) = rest.split_at(12 + len as usize);
        rest = tail;
        let mut buf = Bytes::copy_from_slice(raw);
        let infos = RecordBatchDecoder::decode_batch_info(&mut buf)
            .map_err(|_| ResponseError::CorruptMessage)?;
        let [info] = infos.as_slice() else {
            return Err(ResponseError::CorruptMessage);
        };
        if info.record_count <= 0 {
            return Err(ResponseError::CorruptMessage);
        }
        // maxTimestamp sits at bytes 35..43 of the header.
        let max_timestamp = i64::from_be_bytes(
            raw[35..43]
                .try_into()
                .map_err(|_| ResponseError::CorruptMessage)?,
        );
        out.push(IncomingBatch {
            record_count: info.record_count,
            producer_id: info.producer_id,
            producer_epoch: info.producer_epoch,
            base_sequence: info.base_sequence,
            transactional: info.transactional,
            control: info.control,
            marker_commit: if info.control { marker_type(raw) } else { None },
            last_offset_delta: i32::from_be_bytes(
                raw[23..27]
                    .try_into()
                    .map_err(|_| ResponseError::CorruptMessage)?,
            ),
            max_timestamp,
            bytes: raw.to_vec(),
        });
    }
    Ok(out)
}

/// Whether a control batch is a commit marker (control record key: version, then type 1 =
/// commit, 0 = abort).
fn marker_type(raw: &[u8]) -> Option<bool> {
    let mut buf = Bytes::copy_from_slice(raw);
    let set = RecordBatchDecoder::decode(&mut buf).ok()?;
    let key = set.records.first()?.key.clone()?;
    (key.len() >= 4).then(|| i16::from_be_bytes([key[2], key[3]]) == 1)
}

impl PartitionLog {
    /// Appends a checked batch, giving it the next offsets, and keeps the transaction index:
    /// transactional data opens its producer's transaction here; a marker settles it.
    /// Returns the base offset.
    pub fn append(&mut self, batch: IncomingBatch) -> i64 {
        let base = self.next_offset;
        let last = base + i64::from(batch.last_offset_delta.max(batch.record_count - 1));
        match (batch.transactional, batch.marker_commit) {
            (true, Some(commit)) => {
                if let Some(first) = self.ongoing.remove(&batch.producer_id) {
                    if !commit {
                        self.aborted.push((batch.producer_id, first, last));
                    }
                }
            }
            (true, None) => {
                self.ongoing.entry(batch.producer_id).or_insert(base);
            }
            _ => {}
        }
        let mut bytes = BytesMut::from(&batch.bytes[..]);
        bytes[0..8].copy_from_slice(&base.to_be_bytes());
        self.batches.push(StoredBatch {
            base_offset: base,
            last_offset: last,
            control: batch.control,
            max_timestamp: batch.max_timestamp,
            bytes: bytes.freeze(),
        });
        self.next_offset = last + 1;
        base
    }

    /// The last stable offset: below it every transaction is decided.
    pub fn last_stable_offset(&self) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .unwrap_or(self.next_offset)
    }

    /// Aborted transactions with records in `[from, upto)`: (producer id, first offset).
    /// `aborted` is in the order of the abort markers, so of their offsets: the transactions
    /// that end before `from` are skipped by a binary search, not read.
    pub fn aborted_in(&self, from: i64, upto: i64) -> Vec<(i64, i64)> {
        let start = self.aborted.partition_point(|(_, _, last)| *last < from);
        self.aborted[start..]
            .iter()
            .filter(|(_, first, _)| *first < upto)
            .map(|(pid, first, _)| (*pid, *first))
            .collect()
    }

    /// Whole batches holding offsets from `from` and below `upto`, at most about `max_bytes`
    /// (the first batch is always returned, as Kafka does, so a large batch cannot stall a
    /// consumer).
    pub fn read(&self, from: i64, upto: i64, max_bytes: usize) -> Bytes {
        let start = self.batches.partition_point(|b| b.last_offset < from);
        let batches = &self.batches[start..];
        // How many whole batches the response takes.
        let (mut count, mut size) = (0, 0);
        for b in batches {
            if b.base_offset >= upto || (count > 0 && size + b.bytes.len() > max_bytes) {
                break;
            }
            count += 1;
            size += b.bytes.len();
        }
        match &batches[..count] {
            [] => Bytes::new(),
            // One batch is shared, not copied.
            [one] => one.bytes.clone(),
            many => {
                let mut out = BytesMut::with_capacity(size);
                for b in many {
                    out.extend_from_slice(&b.bytes);
                }
                out.freeze()
            }
        }
    }

    /// The first offset whose batch has a timestamp at or after `ts` (ListOffsets by time).
    pub fn offset_for_timestamp(&self, ts: i64) -> Option<(i64, i64)> {
        self.batches
            .iter()
            .find(|b| !b.control && b.max_timestamp >= ts)
            .map(|b| (b.base_offset.max(self.log_start_offset), b.max_timestamp))
    }

    /// Drops whole batches below `offset` and moves the log start (DeleteRecords).
    pub fn delete_before(&mut self, offset: i64) {
        let offset = offset.min(self.next_offset);
        self.batches.retain(|b| b.last_offset >= offset);
        self.log_start_offset = self.log_start_offset.max(offset);
        // A transaction that ended below the log start has nothing left to skip.
        let start = self.log_start_offset;
        self.aborted.retain(|(_, _, last)| *last >= start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, last: i64, payload: &[u8]) -> StoredBatch {
        StoredBatch {
            base_offset: base,
            last_offset: last,
            control: false,
            max_timestamp: 0,
            bytes: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn aborted_transactions_are_found_by_range_and_dropped_below_the_log_start() {
        // (producer, first offset, abort marker offset), in marker order; 7 spans 5..=40.
        let mut log = PartitionLog {
            aborted: vec![(1, 0, 3), (2, 4, 8), (3, 20, 25), (4, 30, 33), (7, 5, 40)],
            next_offset: 41,
            ..Default::default()
        };
        assert_eq!(log.aborted_in(9, 26), vec![(3, 20), (7, 5)]);
        assert_eq!(log.aborted_in(0, 5), vec![(1, 0), (2, 4)]);
        assert_eq!(log.aborted_in(34, 41), vec![(7, 5)]);
        log.delete_before(26);
        assert_eq!(log.aborted, vec![(4, 30, 33), (7, 5, 40)]);
    }

    #[test]
    fn a_fetch_of_one_batch_shares_its_bytes_and_of_several_joins_them() {
        let log = PartitionLog {
            batches: vec![batch(0, 1, b"aa"), batch(2, 3, b"bb")],
            next_offset: 4,
            ..Default::default()
        };
        let one = log.read(0, 4, 2);
        assert_eq!(&one[..], b"aa");
        assert_eq!(one.as_ptr(), log.batches[0].bytes.as_ptr(), "not copied");
        assert_eq!(&log.read(0, 4, 100)[..], b"aabb");
        assert_eq!(&log.read(2, 4, 100)[..], b"bb");
        assert!(log.read(0, 0, 100).is_empty());
    }
}
