//! Cluster and topic administration: ApiVersions, Metadata, CreateTopics, DeleteTopics,
//! DescribeConfigs, FindCoordinator.

use std::collections::BTreeMap;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::topic_config::{validate_topic_config, TOPIC_DEFAULTS};
use crate::Shared;

/// The APIs this broker implements, each at the versions it implements (and only those are
/// advertised in ApiVersions).
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    // v0 sends the SASL tokens unframed after the handshake; v1 frames them in
    // SaslAuthenticate, which is all this broker speaks.
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

pub(crate) fn supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|(k, lo, hi)| *k == key && (*lo..=*hi).contains(&version))
}

pub(crate) fn api_versions(_r: &ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    if !supported(ApiKey::ApiVersions, version) {
        // Kafka answers an unknown ApiVersions version at v0 with this error and its range.
        response.error_code = ResponseError::UnsupportedVersion.code();
    }
    response.api_keys = SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect();
    response
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn metadata(shared: &Shared, r: MetadataRequest, _version: i16) -> MetadataResponse {
    let mut state = shared.state.write();
    let names: Vec<String> = match &r.topics {
        None => state.topics.keys().cloned().collect(),
        Some(topics) => topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str().to_string()))
            .collect(),
    };
    let mut topics = Vec::new();
    for name in names {
        if !state.topics.contains_key(&name)
            && r.allow_auto_topic_creation
            && shared.config.auto_create_topics
            && r.topics.is_some()
        {
            state.create_topic(&name, shared.config.default_partitions, BTreeMap::new());
        }
        let topic = match state.topics.get(&name) {
            Some(t) => MetadataResponseTopic::default()
                .with_name(Some(TopicName(str(&name))))
                .with_topic_id(Uuid::from_bytes(t.id))
                .with_partitions(
                    (0..t.partitions.len() as i32)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(0))
                                .with_replica_nodes(vec![BrokerId(0)])
                                .with_isr_nodes(vec![BrokerId(0)])
                        })
                        .collect(),
                ),
            None => MetadataResponseTopic::default()
                .with_name(Some(TopicName(str(&name))))
                .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
        };
        topics.push(topic);
    }
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(str(&shared.addr.ip().to_string()))
            .with_port(i32::from(shared.addr.port()))])
        .with_cluster_id(Some(str("eddy-embedded")))
        .with_controller_id(BrokerId(0))
        .with_topics(topics)
}

pub(crate) fn create_topics(shared: &Shared, r: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut state = shared.state.write();
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.as_str().to_string();
            let partitions = if t.num_partitions == -1 {
                shared.config.default_partitions
            } else {
                t.num_partitions
            };
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            // As Kafka: a topic that exists is that error, whatever else is asked of it (and
            // with validate_only too).
            if state.topics.contains_key(&name) {
                return result
                    .with_error_code(ResponseError::TopicAlreadyExists.code())
                    .with_error_message(Some(str(&format!("Topic '{name}' already exists."))));
            }
            let configs: Result<BTreeMap<String, String>, String> = t
                .configs
                .iter()
                .map(|c| {
                    let value = c.value.as_ref().map(|v| v.as_str());
                    validate_topic_config(c.name.as_str(), value)
                        .map(|kept| (c.name.as_str().to_string(), kept))
                })
                .collect();
            let configs = match configs {
                Ok(configs) => configs,
                Err(message) => {
                    return result
                        .with_error_code(ResponseError::InvalidConfig.code())
                        .with_error_message(Some(str(&message)))
                }
            };
            // As Kafka: configs are checked before the partition count.
            if partitions < 1 {
                return result.with_error_code(ResponseError::InvalidPartitions.code());
            }
            if r.validate_only {
                return result
                    .with_num_partitions(partitions)
                    .with_replication_factor(1);
            }
            state.create_topic(&name, partitions, configs);
            let id = state.topics.get(&name).map(|t| t.id).unwrap_or_default();
            result
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_topic_id(Uuid::from_bytes(id))
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

pub(crate) fn delete_topics(shared: &Shared, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut state = shared.state.write();
    let names: Vec<TopicName> = r
        .topic_names
        .into_iter()
        .chain(r.topics.into_iter().filter_map(|t| t.name))
        .collect();
    let responses = names
        .into_iter()
        .map(|name| {
            let gone = state.delete_topic(name.0.as_str());
            let result = DeletableTopicResult::default().with_name(Some(name));
            if gone {
                result
            } else {
                result.with_error_code(ResponseError::UnknownTopicOrPartition.code())
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(crate) fn describe_configs(
    shared: &Shared,
    r: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let state = shared.state.read();
    let results = r
        .resources
        .into_iter()
        .map(|res| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let mut configs: BTreeMap<String, (String, bool)> = TOPIC_DEFAULTS
                .iter()
                .map(|(k, v)| (k.to_string(), (v.to_string(), true)))
                .collect();
            // Resource type 2 is a topic, 4 a broker.
            if res.resource_type == 2 {
                match state.topics.get(res.resource_name.as_str()) {
                    Some(t) => {
                        for (k, v) in &t.configs {
                            configs.insert(k.clone(), (v.clone(), false));
                        }
                    }
                    None => {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    }
                }
            }
            let wanted = res.configuration_keys.as_ref().map(|keys| {
                keys.iter()
                    .map(|k| k.as_str().to_string())
                    .collect::<Vec<_>>()
            });
            let configs = configs
                .into_iter()
                .filter(|(k, _)| wanted.as_ref().is_none_or(|w| w.contains(k)))
                .map(|(k, (v, default))| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str(&k))
                        .with_value(Some(str(&v)))
                        .with_config_source(if default { 5 } else { 1 })
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

pub(crate) fn find_coordinator(
    shared: &Shared,
    r: FindCoordinatorRequest,
    _version: i16,
) -> FindCoordinatorResponse {
    // One node: it coordinates every group and transaction.
    FindCoordinatorResponse::default()
        .with_node_id(BrokerId(0))
        .with_host(str(&shared.addr.ip().to_string()))
        .with_port(i32::from(shared.addr.port()))
        .with_coordinators(
            r.coordinator_keys
                .into_iter()
                .map(|key| {
                    kafka_protocol::messages::find_coordinator_response::Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(0))
                        .with_host(str(&shared.addr.ip().to_string()))
                        .with_port(i32::from(shared.addr.port()))
                })
                .collect(),
        )
}
