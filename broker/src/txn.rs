//! Transactions: InitProducerId with a transactional id (fencing the previous producer),
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn with control markers, and the
//! transaction timeout. Only this module writes markers and decides transactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;

use crate::log::split_batches;
use crate::state::{ClusterState, CommittedOffset, ProducerState, Transaction};
use crate::Shared;

/// Appends a commit or abort marker for `pid` to a partition and settles its open transaction.
fn write_marker(
    state: &mut ClusterState,
    topic: &str,
    partition: i32,
    pid: i64,
    epoch: i16,
    commit: bool,
) {
    // Control record key: version 0, type (0 abort, 1 commit); value: version 0, coordinator epoch.
    let key = [0u8, 0, 0, u8::from(commit)];
    let value = [0u8, 0, 0, 0, 0, 0];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: pid,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now,
        key: Some(bytes::Bytes::copy_from_slice(&key)),
        value: Some(bytes::Bytes::copy_from_slice(&value)),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    if RecordBatchEncoder::encode(&mut buf, [&record], &options).is_err() {
        tracing::error!("cannot encode a transaction marker");
        return;
    }
    let Ok(mut batches) = split_batches(&buf) else {
        return;
    };
    let Some(batch) = batches.pop() else { return };
    state.append(topic, partition, batch);
}

/// Ends the open transaction of `txn_id`: markers on every partition, offsets applied on commit.
fn end_transaction(state: &mut ClusterState, txn_id: &str, commit: bool) {
    let Some(txn) = state.transactions.get(txn_id).cloned() else {
        return;
    };
    for (topic, partition) in &txn.partitions {
        write_marker(state, topic, *partition, txn.producer_id, txn.epoch, commit);
    }
    if commit {
        for (key, offset) in txn.offsets {
            state.commit_offset(key, offset);
        }
    }
    if let Some(t) = state.transactions.get_mut(txn_id) {
        t.started = None;
        t.partitions.clear();
        t.offsets.clear();
    }
}

/// Bumps the epoch of `txn_id`, fencing any producer still using the old one.
fn bump_epoch(state: &mut ClusterState, txn_id: &str) -> Option<(i64, i16)> {
    let exhausted = state.transactions.get(txn_id)?.epoch == i16::MAX - 1;
    let fresh_pid = exhausted.then(|| state.new_producer_id());
    let t = state.transactions.get_mut(txn_id)?;
    match fresh_pid {
        Some(pid) => {
            t.producer_id = pid;
            t.epoch = 0;
        }
        None => t.epoch += 1,
    }
    let (pid, epoch) = (t.producer_id, t.epoch);
    state.producers.insert(
        pid,
        ProducerState {
            epoch,
            ..Default::default()
        },
    );
    state.journal_transaction(txn_id);
    Some((pid, epoch))
}

pub(crate) fn init_producer_id(
    shared: &Shared,
    r: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut state = shared.state.write();
    let Some(txn_id) = r
        .transactional_id
        .as_ref()
        .map(|t| t.0.as_str().to_string())
    else {
        let id = state.new_producer_id();
        return InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0);
    };
    let timeout = Duration::from_millis(u64::try_from(r.transaction_timeout_ms).unwrap_or(60_000));
    let (pid, epoch) = if state.transactions.contains_key(&txn_id) {
        // A new instance of the producer: abort what the old one left open and fence it.
        if state.transactions[&txn_id].started.is_some() {
            end_transaction(&mut state, &txn_id, false);
        }
        if let Some(t) = state.transactions.get_mut(&txn_id) {
            t.timeout = timeout;
        }
        bump_epoch(&mut state, &txn_id).unwrap_or((-1, -1))
    } else {
        let pid = state.new_producer_id();
        state.transactions.insert(
            txn_id.clone(),
            Transaction {
                producer_id: pid,
                epoch: 0,
                timeout,
                started: None,
                partitions: Default::default(),
                offsets: Vec::new(),
            },
        );
        state.journal_transaction(&txn_id);
        (pid, 0)
    };
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}

/// After a restart, aborts every transaction that was open when the broker stopped (their
/// producers must start over), so that the last stable offsets move on.
pub(crate) fn abort_open_after_restart(state: &mut ClusterState) {
    let mut open = Vec::new();
    for (name, topic) in &state.topics {
        for (p, log) in topic.partitions.iter().enumerate() {
            for pid in log.ongoing.keys() {
                open.push((name.clone(), p as i32, *pid));
            }
        }
    }
    for (topic, partition, pid) in open {
        let epoch = state.producers.get(&pid).map_or(0, |p| p.epoch);
        write_marker(state, &topic, partition, pid, epoch, false);
    }
}

/// Checks that `pid`/`epoch` is the current producer of `txn_id`.
fn check_producer(
    state: &ClusterState,
    txn_id: &str,
    pid: i64,
    epoch: i16,
) -> Result<(), ResponseError> {
    let t = state
        .transactions
        .get(txn_id)
        .ok_or(ResponseError::InvalidProducerIdMapping)?;
    if t.producer_id != pid {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if epoch < t.epoch {
        return Err(ResponseError::ProducerFenced);
    }
    if epoch > t.epoch {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    Ok(())
}

fn begin(state: &mut ClusterState, txn_id: &str) {
    if let Some(t) = state.transactions.get_mut(txn_id) {
        t.started.get_or_insert_with(Instant::now);
    }
}

pub(crate) fn add_partitions(
    shared: &Shared,
    r: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let mut state = shared.state.write();
    let txn_id = r.v3_and_below_transactional_id.0.as_str().to_string();
    let checked = check_producer(
        &state,
        &txn_id,
        r.v3_and_below_producer_id.0,
        r.v3_and_below_producer_epoch,
    );
    if checked.is_ok() {
        begin(&mut state, &txn_id);
    }
    let results = r
        .v3_and_below_topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.as_str().to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let code = match checked {
                        Err(e) => e.code(),
                        Ok(()) if state.partition(&name, p).is_none() => {
                            ResponseError::UnknownTopicOrPartition.code()
                        }
                        Ok(()) => {
                            if let Some(txn) = state.transactions.get_mut(&txn_id) {
                                txn.partitions.insert((name.clone(), p));
                            }
                            0
                        }
                    };
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name)
                .with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

pub(crate) fn add_offsets(shared: &Shared, r: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let mut state = shared.state.write();
    let txn_id = r.transactional_id.0.as_str().to_string();
    match check_producer(&state, &txn_id, r.producer_id.0, r.producer_epoch) {
        Ok(()) => {
            begin(&mut state, &txn_id);
            AddOffsetsToTxnResponse::default()
        }
        Err(e) => AddOffsetsToTxnResponse::default().with_error_code(e.code()),
    }
}

pub(crate) fn txn_offset_commit(
    shared: &Shared,
    r: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group = r.group_id.0.as_str().to_string();
    // The group's member and generation (KIP-447), as the group APIs check them; the group
    // stays locked until the offsets are stored, so no rebalance comes in between.
    let groups = shared.groups.lock();
    let member_checked = groups.check_txn_member(&group, r.member_id.as_str(), r.generation_id);
    let mut state = shared.state.write();
    let txn_id = r.transactional_id.0.as_str().to_string();
    let checked =
        check_producer(&state, &txn_id, r.producer_id.0, r.producer_epoch).and(member_checked);
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.as_str().to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let code = match checked {
                        Err(e) => e.code(),
                        Ok(()) => {
                            let offset = CommittedOffset {
                                offset: p.committed_offset,
                                metadata: p.committed_metadata.map(|m| m.as_str().to_string()),
                            };
                            if let Some(txn) = state.transactions.get_mut(&txn_id) {
                                txn.offsets.push((
                                    (group.clone(), name.clone(), p.partition_index),
                                    offset,
                                ));
                            }
                            0
                        }
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    drop(state);
    drop(groups);
    TxnOffsetCommitResponse::default().with_topics(topics)
}

pub(crate) fn end_txn(shared: &Shared, r: EndTxnRequest) -> EndTxnResponse {
    let response = {
        let mut state = shared.state.write();
        let txn_id = r.transactional_id.0.as_str().to_string();
        match check_producer(&state, &txn_id, r.producer_id.0, r.producer_epoch) {
            Err(e) => EndTxnResponse::default().with_error_code(e.code()),
            Ok(()) => {
                end_transaction(&mut state, &txn_id, r.committed);
                EndTxnResponse::default()
            }
        }
    };
    shared.appended.notify_waiters();
    response
}

/// The producer ids with an open transaction on `(topic, partition)` that added it, for
/// checking transactional produce requests.
pub(crate) fn partition_in_open_txn(
    state: &ClusterState,
    pid: i64,
    topic: &str,
    partition: i32,
) -> bool {
    state.transactions.values().any(|t| {
        t.producer_id == pid
            && t.started.is_some()
            && t.partitions.contains(&(topic.to_string(), partition))
    })
}

/// Whether an open transaction holds offsets of `(group, topic, partition)` (require_stable).
pub(crate) fn offsets_pending(
    state: &ClusterState,
    group: &str,
    topic: &str,
    partition: i32,
) -> bool {
    state.transactions.values().any(|t| {
        t.started.is_some()
            && t.offsets
                .iter()
                .any(|((g, tp, p), _)| g == group && tp == topic && *p == partition)
    })
}

/// Aborts transactions that outlive their timeout, and fences their producers, every 100 ms.
pub(crate) async fn expire_transactions(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let expired = {
            let mut state = shared.state.write();
            let now = Instant::now();
            let expired: Vec<String> = state
                .transactions
                .iter()
                .filter(|(_, t)| t.started.is_some_and(|s| now.duration_since(s) > t.timeout))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                tracing::info!(transactional_id = %id, "transaction timed out: aborting");
                end_transaction(&mut state, id, false);
                bump_epoch(&mut state, id);
            }
            !expired.is_empty()
        };
        if expired {
            shared.appended.notify_waiters();
        }
    }
}
