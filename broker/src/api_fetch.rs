//! Reads: Fetch (long poll with max_wait and min_bytes), ListOffsets, DeleteRecords.

use std::time::Duration;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProducerId,
};
use kafka_protocol::ResponseError;

use crate::Shared;

fn read_all(shared: &Shared, r: &FetchRequest) -> (FetchResponse, usize) {
    let state = shared.state.read();
    let mut total = 0usize;
    let mut budget = usize::try_from(r.max_bytes).unwrap_or(usize::MAX).max(1);
    let responses = r
        .topics
        .iter()
        .map(|t| {
            let name = t.topic.0.as_str();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let data = PartitionData::default().with_partition_index(p.partition);
                    let Some(log) = state.partition(name, p.partition) else {
                        return data
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_high_watermark(-1);
                    };
                    let hw = log.next_offset;
                    let lso = log.last_stable_offset();
                    let data = data
                        .with_high_watermark(hw)
                        .with_last_stable_offset(lso)
                        .with_log_start_offset(log.log_start_offset);
                    if p.fetch_offset < log.log_start_offset || p.fetch_offset > hw {
                        return data.with_error_code(ResponseError::OffsetOutOfRange.code());
                    }
                    // read_committed reads to the last stable offset and learns which producers
                    // aborted in that range, so that it can skip their records.
                    let read_committed = r.isolation_level == 1;
                    let upto = if read_committed { lso } else { hw };
                    let max = usize::try_from(p.partition_max_bytes)
                        .unwrap_or(0)
                        .min(budget)
                        .max(1);
                    let records = log.read(p.fetch_offset, upto, max);
                    total += records.len();
                    budget = budget.saturating_sub(records.len());
                    let aborted = if read_committed {
                        log.aborted_in(p.fetch_offset, upto)
                            .into_iter()
                            .map(|(pid, first)| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(pid))
                                    .with_first_offset(first)
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    data.with_records(Some(records))
                        .with_aborted_transactions(Some(aborted))
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    (FetchResponse::default().with_responses(responses), total)
}

pub(crate) async fn fetch(shared: &Shared, r: FetchRequest) -> FetchResponse {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(r.max_wait_ms).unwrap_or(0));
    loop {
        // Register for the wake-up before reading, so an append in between is not missed.
        let appended = shared.appended.notified();
        let (response, bytes) = read_all(shared, &r);
        let min = usize::try_from(r.min_bytes).unwrap_or(0);
        if bytes >= min.max(1) || tokio::time::Instant::now() >= deadline {
            return response;
        }
        if tokio::time::timeout_at(deadline, appended).await.is_err() {
            return read_all(shared, &r).0;
        }
    }
}

pub(crate) fn list_offsets(shared: &Shared, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let state = shared.state.read();
    let read_committed = r.isolation_level == 1;
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.as_str().to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_leader_epoch(0);
                    let Some(log) = state.partition(&name, p.partition_index) else {
                        return resp
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_offset(-1)
                            .with_timestamp(-1);
                    };
                    match p.timestamp {
                        -1 if read_committed => resp
                            .with_offset(log.last_stable_offset())
                            .with_timestamp(-1),
                        -1 => resp.with_offset(log.next_offset).with_timestamp(-1), // latest
                        -2 => resp.with_offset(log.log_start_offset).with_timestamp(-1), // earliest
                        ts => match log.offset_for_timestamp(ts) {
                            Some((offset, found)) => resp.with_offset(offset).with_timestamp(found),
                            None => resp.with_offset(-1).with_timestamp(-1),
                        },
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

pub(crate) fn delete_records(shared: &Shared, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut state = shared.state.write();
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.as_str().to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    let end = state
                        .partition(&name, p.partition_index)
                        .map(|l| l.next_offset);
                    match end {
                        Some(end) => {
                            // -1 means "up to the high watermark".
                            let to = if p.offset == -1 { end } else { p.offset };
                            if to > end {
                                return result
                                    .with_error_code(ResponseError::OffsetOutOfRange.code())
                                    .with_low_watermark(-1);
                            }
                            let start = state
                                .delete_records(&name, p.partition_index, to)
                                .unwrap_or(-1);
                            result.with_low_watermark(start)
                        }
                        None => result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
