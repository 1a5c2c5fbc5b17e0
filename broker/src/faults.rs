//! Fault injection: pause and resume (stop answering), drop every connection, delay or fail
//! chosen request kinds with chosen error codes, and reject produce requests to chosen topics.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ResponseKind};
use parking_lot::Mutex;
use tokio::sync::watch;

/// What happens to requests of one kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultRule {
    /// (delay, how many more requests get it; `None`: all).
    pub delay: Option<(Duration, Option<u32>)>,
    /// (error code, how many more requests get it; `None`: all).
    pub fail: Option<(i16, Option<u32>)>,
}

/// The faults in force.
pub(crate) struct Faults {
    /// `true` while the broker is paused.
    pub paused: watch::Sender<bool>,
    /// Bumped to drop every open connection.
    pub connection_epoch: watch::Sender<u64>,
    pub rules: Mutex<BTreeMap<i16, FaultRule>>,
    /// Produce rejections: (topic name suffix, error code, how many more produce requests that
    /// write to such a topic are rejected).
    pub produce_rejections: Mutex<Vec<(String, i16, u32)>>,
}

impl Faults {
    pub fn new() -> Self {
        Self {
            paused: watch::channel(false).0,
            connection_epoch: watch::channel(0).0,
            rules: Mutex::new(BTreeMap::new()),
            produce_rejections: Mutex::new(Vec::new()),
        }
    }

    /// Takes out of `request` the topics a produce rejection covers — they are not appended, as
    /// a broker that refuses a batch appends nothing of it — and returns their error responses.
    pub fn reject_produce(&self, request: &mut ProduceRequest) -> Vec<TopicProduceResponse> {
        let mut rejections = self.produce_rejections.lock();
        let mut rejected = Vec::new();
        for rule in rejections.iter_mut().filter(|r| r.2 > 0) {
            let (suffix, code) = (rule.0.clone(), rule.1);
            let before = request.topic_data.len();
            request.topic_data.retain(|t| {
                if !t.name.0.ends_with(suffix.as_str()) {
                    return true;
                }
                rejected.push(
                    TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_partition_responses(
                            t.partition_data
                                .iter()
                                .map(|p| {
                                    PartitionProduceResponse::default()
                                        .with_index(p.index)
                                        .with_error_code(code)
                                        .with_base_offset(-1)
                                })
                                .collect(),
                        ),
                );
                false
            });
            if request.topic_data.len() < before {
                rule.2 -= 1;
            }
        }
        rejected
    }

    /// Waits while the broker is paused.
    pub async fn wait_unpaused(&self) {
        let mut rx = self.paused.subscribe();
        while *rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The delay for `key`, and the error to inject into this request's response, if any.
    pub fn take(&self, key: ApiKey) -> (Option<Duration>, Option<i16>) {
        let mut rules = self.rules.lock();
        let Some(rule) = rules.get_mut(&(key as i16)) else {
            return (None, None);
        };
        (take_one(&mut rule.delay), take_one(&mut rule.fail))
    }
}

/// The fault's value if it still applies, counting it down when it is limited.
fn take_one<T: Copy>(fault: &mut Option<(T, Option<u32>)>) -> Option<T> {
    match fault {
        Some((value, None)) => Some(*value),
        Some((value, Some(n))) if *n > 0 => {
            *n -= 1;
            Some(*value)
        }
        _ => None,
    }
}

/// Sets `code` as the error of a response: at the top level where the response has one, else
/// on every partition.
pub(crate) fn inject_error(response: &mut ResponseKind, code: i16) {
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter_mut()
            .flat_map(|t| t.partition_responses.iter_mut())
            .for_each(|p| {
                p.error_code = code;
                p.base_offset = -1;
            }),
        ResponseKind::Fetch(r) => r
            .responses
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .for_each(|p| {
                p.error_code = code;
                p.records = None;
            }),
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .for_each(|p| p.error_code = code),
        ResponseKind::Metadata(r) => r.topics.iter_mut().for_each(|t| t.error_code = code),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .for_each(|p| p.error_code = code),
        ResponseKind::OffsetFetch(r) => r.error_code = code,
        ResponseKind::FindCoordinator(r) => r.error_code = code,
        ResponseKind::JoinGroup(r) => r.error_code = code,
        ResponseKind::SyncGroup(r) => r.error_code = code,
        ResponseKind::Heartbeat(r) => r.error_code = code,
        ResponseKind::LeaveGroup(r) => r.error_code = code,
        ResponseKind::InitProducerId(r) => r.error_code = code,
        ResponseKind::AddPartitionsToTxn(r) => r
            .results_by_topic_v3_and_below
            .iter_mut()
            .flat_map(|t| t.results_by_partition.iter_mut())
            .for_each(|p| p.partition_error_code = code),
        ResponseKind::AddOffsetsToTxn(r) => r.error_code = code,
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .for_each(|p| p.error_code = code),
        ResponseKind::EndTxn(r) => r.error_code = code,
        ResponseKind::CreateTopics(r) => r.topics.iter_mut().for_each(|t| t.error_code = code),
        ResponseKind::DeleteTopics(r) => r.responses.iter_mut().for_each(|t| t.error_code = code),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .for_each(|p| p.error_code = code),
        ResponseKind::DescribeConfigs(r) => {
            r.results.iter_mut().for_each(|res| res.error_code = code)
        }
        ResponseKind::ApiVersions(r) => r.error_code = code,
        _ => {}
    }
}
