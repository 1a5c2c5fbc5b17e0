//! Writes: InitProducerId and Produce, with idempotent sequence checks.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use crate::log::{split_batches, IncomingBatch};
use crate::state::{ClusterState, RECENT_BATCHES};
use crate::txn::partition_in_open_txn;
use crate::Shared;

/// Checks an idempotent batch against the producer's last sequence on the partition.
/// `Ok(Some(offset))`: a duplicate of the last batch, already at `offset`.
fn check_sequence(
    state: &mut ClusterState,
    topic: &str,
    partition: i32,
    b: &IncomingBatch,
) -> Result<Option<i64>, ResponseError> {
    if b.producer_id < 0 {
        return Ok(None);
    }
    let producer = state.producers.entry(b.producer_id).or_default();
    if b.producer_epoch < producer.epoch {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    if b.producer_epoch > producer.epoch {
        producer.epoch = b.producer_epoch;
        producer.last.clear();
    }
    let last_seq = b.base_sequence.wrapping_add(b.record_count - 1);
    let Some(recent) = producer.last.get(&(topic.to_string(), partition)) else {
        return match b.base_sequence {
            0 => Ok(None),
            _ => Err(ResponseError::OutOfOrderSequenceNumber),
        };
    };
    if let Some(&(_, _, offset)) = recent
        .iter()
        .find(|(first, last, _)| *first == b.base_sequence && *last == last_seq)
    {
        return Ok(Some(offset));
    }
    match recent.back() {
        Some(&(_, newest, _)) if b.base_sequence != newest.wrapping_add(1) => {
            Err(ResponseError::OutOfOrderSequenceNumber)
        }
        _ => Ok(None),
    }
}

/// Remembers an appended batch of producer `pid` for duplicate detection.
fn remember_batch(
    state: &mut ClusterState,
    pid: i64,
    (topic, partition): (&str, i32),
    batch: (i32, i32, i64),
) {
    let recent = state
        .producers
        .entry(pid)
        .or_default()
        .last
        .entry((topic.to_string(), partition))
        .or_default();
    recent.push_back(batch);
    if recent.len() > RECENT_BATCHES {
        recent.pop_front();
    }
}

/// The largest record batch `topic` takes: its `max.message.bytes`, or the broker's default.
fn max_message_bytes(state: &ClusterState, topic: &str) -> usize {
    let configs = state.topics.get(topic).map(|t| &t.configs);
    crate::topic_config::max_message_bytes(configs)
}

fn append_partition(
    state: &mut ClusterState,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Result<i64, ResponseError> {
    if state.partition(topic, partition).is_none() {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    let batches = split_batches(records)?;
    // As Kafka validates a request before appending any of it: a batch larger than the topic's
    // `max.message.bytes` refuses the partition's whole data.
    let max_bytes = max_message_bytes(state, topic);
    if batches.iter().any(|b| b.bytes.len() > max_bytes) {
        return Err(ResponseError::MessageTooLarge);
    }
    let mut first_offset = None;
    for b in batches {
        if b.transactional && !partition_in_open_txn(state, b.producer_id, topic, partition) {
            return Err(ResponseError::InvalidTxnState);
        }
        if let Some(offset) = check_sequence(state, topic, partition, &b)? {
            first_offset.get_or_insert(offset);
            continue;
        }
        let (pid, first, last) = (
            b.producer_id,
            b.base_sequence,
            b.base_sequence.wrapping_add(b.record_count - 1),
        );
        let base = state
            .append(topic, partition, b)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;

        first_offset.get_or_insert(base);
        if pid >= 0 {
            remember_batch(state, pid, (topic, partition), (first, last, base));
        }
    }
    first_offset.ok_or(ResponseError::CorruptMessage)
}

pub(crate) fn produce(shared: &Shared, r: ProduceRequest) -> ProduceResponse {
    let mut responses = Vec::new();
    {
        let mut state = shared.state.write();
        for topic in r.topic_data {
            let name = topic.name.0.as_str().to_string();
            let partition_responses = topic
                .partition_data
                .into_iter()
                .map(|p| {
                    let records = p.records.unwrap_or_default();
                    let result = append_partition(&mut state, &name, p.index, &records);
                    let log_start = state
                        .partition(&name, p.index)
                        .map_or(-1, |l| l.log_start_offset);
                    match result {
                        Ok(base) => PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_base_offset(base)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(log_start),
                        Err(e) => PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(e.code())
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(log_start),
                    }
                })
                .collect();
            responses.push(
                TopicProduceResponse::default()
                    .with_name(topic.name)
                    .with_partition_responses(partition_responses),
            );
        }
    }
    shared.appended.notify_waiters();
    ProduceResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base_sequence: i32, record_count: i32) -> IncomingBatch {
        IncomingBatch {
            record_count,
            producer_id: 7,
            producer_epoch: 0,
            base_sequence,
            transactional: false,
            control: false,
            marker_commit: None,
            last_offset_delta: record_count - 1,
            max_timestamp: 0,
            bytes: Vec::new(),
        }
    }

    /// Three batches were appended but their answers lost with the connection: the producer
    /// sends all three again, oldest first. Each is a duplicate with its first offset, as a
    /// Kafka broker answers; a gap is still out of order.
    #[test]
    fn retried_in_flight_batches_are_duplicates_not_out_of_order() {
        let mut state = ClusterState::default();
        for (i, base) in [0, 10, 20].into_iter().enumerate() {
            assert_eq!(
                check_sequence(&mut state, "t", 0, &batch(base, 10)),
                Ok(None)
            );
            remember_batch(&mut state, 7, ("t", 0), (base, base + 9, i as i64 * 10));
        }
        for (i, base) in [0, 10, 20].into_iter().enumerate() {
            assert_eq!(
                check_sequence(&mut state, "t", 0, &batch(base, 10)),
                Ok(Some(i as i64 * 10))
            );
        }
        assert_eq!(check_sequence(&mut state, "t", 0, &batch(30, 10)), Ok(None));
        assert_eq!(
            check_sequence(&mut state, "t", 0, &batch(40, 10)),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        // Only the latest batches are remembered.
        for base in (30..100).step_by(10) {
            remember_batch(&mut state, 7, ("t", 0), (base, base + 9, i64::from(base)));
        }
        assert_eq!(
            state.producers[&7].last[&("t".to_string(), 0)].len(),
            RECENT_BATCHES
        );
    }
}
