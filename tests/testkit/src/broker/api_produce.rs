//! Writes: InitProducerId and Produce, with idempotent sequence checks.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use crate::broker::log::{split_batches, IncomingBatch};
use crate::broker::state::ClusterState;
use crate::broker::txn::partition_in_open_txn;
use crate::broker::Shared;

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
    match producer.last.get(&(topic.to_string(), partition)) {
        Some(&(first, last, offset)) if first == b.base_sequence && last == last_seq => {
            Ok(Some(offset))
        }
        Some(&(_, last, _)) if b.base_sequence != last.wrapping_add(1) => {
            Err(ResponseError::OutOfOrderSequenceNumber)
        }
        None if b.base_sequence != 0 => Err(ResponseError::OutOfOrderSequenceNumber),
        _ => Ok(None),
    }
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
            state
                .producers
                .entry(pid)
                .or_default()
                .last
                .insert((topic.to_string(), partition), (first, last, base));
        }
    }
    first_offset.ok_or(ResponseError::CorruptMessage)
}

pub(crate) fn produce(shared: &Shared, r: ProduceRequest) -> ProduceResponse {
    let mut responses = Vec::new();
    {
        let mut state = shared.state.lock();
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
