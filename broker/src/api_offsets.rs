//! Committed offsets of consumer groups: OffsetCommit and OffsetFetch.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::state::CommittedOffset;
use crate::Shared;

pub(crate) fn offset_commit(shared: &Shared, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = r.group_id.0.as_str().to_string();
    // Members of a group commit with their generation; a stale member is refused.
    let refused = shared
        .groups
        .lock()
        .check_member(
            &group,
            r.member_id.as_str(),
            r.generation_id_or_member_epoch,
        )
        .err();
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
                    if let Some(e) = refused {
                        return OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(e.code());
                    }
                    state.commit_offset(
                        (group.clone(), name.clone(), p.partition_index),
                        CommittedOffset {
                            offset: p.committed_offset,
                            metadata: p.committed_metadata.map(|m| m.as_str().to_string()),
                        },
                    );
                    OffsetCommitResponsePartition::default().with_partition_index(p.partition_index)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

pub(crate) fn offset_fetch(shared: &Shared, r: OffsetFetchRequest) -> OffsetFetchResponse {
    let state = shared.state.read();
    let group = r.group_id.0.as_str().to_string();
    let requested: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = match r.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect(),
        None => {
            // All committed offsets of the group.
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            for (g, t, p) in state.offsets.keys() {
                if *g == group {
                    by_topic.entry(t.clone()).or_default().push(*p);
                }
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    (
                        kafka_protocol::messages::TopicName(StrBytes::from_string(t)),
                        ps,
                    )
                })
                .collect()
        }
    };
    let topics = requested
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|p| {
                    let committed =
                        state
                            .offsets
                            .get(&(group.clone(), name.0.as_str().to_string(), p));
                    if r.require_stable
                        && crate::txn::offsets_pending(&state, &group, name.0.as_str(), p)
                    {
                        return OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(-1)
                            .with_error_code(
                                kafka_protocol::ResponseError::UnstableOffsetCommit.code(),
                            );
                    }
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(committed.map_or(-1, |c| c.offset))
                        .with_committed_leader_epoch(-1)
                        .with_metadata(
                            committed
                                .and_then(|c| c.metadata.clone())
                                .map(StrBytes::from_string),
                        )
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
