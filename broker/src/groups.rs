//! The classic consumer-group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup (and what
//! DescribeGroups and ListGroups tell of it, `describe.rs`), with
//! session and rebalance timeouts. The broker is agnostic of the assignor, so eager and
//! cooperative clients both work.
//!
//! Static membership (KIP-345): a member that joins with a `group.instance.id` keeps its
//! place while it is away for less than its session timeout.
//! 1. A static member that joins again with no member id (a restarted process) takes over its
//!    old member's place under a new member id: its assignment, and no rebalance when the
//!    group is stable, its metadata is unchanged and it was not the leader (the leader
//!    rebalances, as its assignor must see the members).
//! 2. The old member id is fenced: its pending join or sync, and anything it sends with its
//!    instance id, is answered `FENCED_INSTANCE_ID`.
//! 3. A static member leaves on LeaveGroup naming its instance id, or when its session times
//!    out; closing its client sends neither, so a restart within the timeout moves nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::Shared;

mod describe;
pub(crate) use describe::{describe_groups, list_groups};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Empty,
    PreparingRebalance,
    AwaitingSync,
    Stable,
}

struct Member {
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_heartbeat: Instant,
    pending_join: Option<oneshot::Sender<JoinGroupResponse>>,
    pending_sync: Option<oneshot::Sender<SyncGroupResponse>>,
    assignment: Bytes,
    /// Who joined (the request header's client id and the connection's address), as
    /// DescribeGroups reports them.
    client: Client,
}

/// A member's client, as its JoinGroup came.
#[derive(Debug, Clone, Default)]
pub(crate) struct Client {
    pub id: String,
    pub host: String,
}

struct Group {
    phase: Phase,
    generation: i32,
    leader: Option<String>,
    protocol: Option<String>,
    protocol_type: String,
    members: BTreeMap<String, Member>,
    /// Static members' current member ids, by instance id.
    static_members: BTreeMap<String, String>,
    /// Bumped on every new rebalance, so that a stale timer does nothing.
    rebalance_round: u64,
}

impl Group {
    /// Whether `instance_id` belongs to a member other than `member` (a fenced incarnation).
    fn fenced(&self, instance_id: Option<&StrBytes>, member: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i.as_str()))
            .is_some_and(|current| current != member)
    }

    /// Drops members that `keep` refuses, and their static ids.
    fn retain_members(&mut self, mut keep: impl FnMut(&Member) -> bool) {
        self.members.retain(|_, m| keep(m));
        let members = &self.members;
        self.static_members.retain(|_, id| members.contains_key(id));
    }
}

impl Default for Group {
    fn default() -> Self {
        Self {
            phase: Phase::Empty,
            generation: 0,
            leader: None,
            protocol: None,
            protocol_type: String::new(),
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            rebalance_round: 0,
        }
    }
}

/// Every group of the broker.
#[derive(Default)]
pub(crate) struct Groups {
    groups: BTreeMap<String, Group>,
    next_member: u64,
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Groups {
    /// The generation a group is at, and whether `member` belongs to it (for OffsetCommit).
    pub fn check_member(
        &self,
        group: &str,
        member: &str,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if generation < 0 {
            return Ok(()); // a simple (assign-only) consumer commits without a generation
        }
        let Some(g) = self.groups.get(group) else {
            return Err(ResponseError::IllegalGeneration);
        };
        if !g.members.contains_key(member) {
            return Err(ResponseError::UnknownMemberId);
        }
        if g.generation != generation {
            return Err(ResponseError::IllegalGeneration);
        }
        // As Kafka: a member of the current generation may commit while the group prepares a
        // rebalance (eager consumers commit in their revocation callback), but not while it
        // waits for the new assignment.
        if g.phase == Phase::AwaitingSync {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }
}

impl Groups {
    /// Whether a transactional producer may commit offsets for `member` of `group` at
    /// `generation` (TxnOffsetCommit v3+, KIP-447): as Kafka, an unknown member is refused with
    /// UNKNOWN_MEMBER_ID and a stale generation with ILLEGAL_GENERATION, so that a zombie that
    /// missed a rebalance cannot commit offsets of partitions that moved. An empty member id or
    /// a negative generation (older request versions, producers outside a group) skip the
    /// respective check. Unlike OffsetCommit, a rebalance in progress does not refuse it.
    pub fn check_txn_member(
        &self,
        group: &str,
        member: &str,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let Some(g) = self.groups.get(group) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if !member.is_empty() && !g.members.contains_key(member) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation >= 0 && generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }
}

/// Starts a rebalance of `group` (if not already under way) and arms its timer.
fn begin_rebalance(shared: &Arc<Shared>, group_id: &str, g: &mut Group) {
    if g.phase == Phase::PreparingRebalance {
        return;
    }
    g.phase = Phase::PreparingRebalance;
    g.rebalance_round += 1;
    // Followers waiting for their assignment must rejoin.
    for m in g.members.values_mut() {
        if let Some(tx) = m.pending_sync.take() {
            let _ = tx.send(
                SyncGroupResponse::default()
                    .with_error_code(ResponseError::RebalanceInProgress.code()),
            );
        }
    }
    let timeout = g
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or(Duration::from_secs(1));
    let (shared, group_id, round) = (Arc::clone(shared), group_id.to_string(), g.rebalance_round);
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let mut groups = shared.groups.lock();
        if let Some(g) = groups.groups.get_mut(&group_id) {
            if g.phase == Phase::PreparingRebalance && g.rebalance_round == round {
                complete_join(g);
            }
        }
    });
}

/// Ends the join phase: members that did not rejoin leave, the generation moves on, and every
/// waiting JoinGroup is answered (the leader with the members' metadata).
fn complete_join(g: &mut Group) {
    g.retain_members(|m| m.pending_join.is_some());
    if g.members.is_empty() {
        g.phase = Phase::Empty;
        g.leader = None;
        return;
    }
    g.generation += 1;
    if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
        g.leader = g.members.keys().next().cloned();
    }
    let leader = g.leader.clone().unwrap_or_default();
    // The first protocol of the leader that every member supports.
    let protocol = g.members[&leader]
        .protocols
        .iter()
        .map(|(name, _)| name.clone())
        .find(|name| {
            g.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        });
    g.protocol = protocol.clone();
    g.phase = Phase::AwaitingSync;
    let members: Vec<JoinGroupResponseMember> = g
        .members
        .iter()
        .map(|(id, m)| {
            let metadata = m
                .protocols
                .iter()
                .find(|(n, _)| Some(n) == protocol.as_ref())
                .map(|(_, md)| md.clone())
                .unwrap_or_default();
            JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_metadata(metadata)
        })
        .collect();
    let now = Instant::now();
    for (id, m) in g.members.iter_mut() {
        m.last_heartbeat = now;
        let Some(tx) = m.pending_join.take() else {
            continue;
        };
        let mut response = JoinGroupResponse::default()
            .with_generation_id(g.generation)
            .with_protocol_type(Some(s(&g.protocol_type)))
            .with_protocol_name(protocol.as_deref().map(s))
            .with_leader(s(&leader))
            .with_member_id(s(id));
        if protocol.is_none() {
            response = response.with_error_code(ResponseError::InconsistentGroupProtocol.code());
        } else if *id == leader {
            response = response.with_members(members.clone());
        }
        let _ = tx.send(response);
    }
}

pub(crate) async fn join_group(
    shared: &Arc<Shared>,
    r: JoinGroupRequest,
    client: Client,
) -> JoinGroupResponse {
    let rx = {
        let mut groups = shared.groups.lock();
        let group_id = r.group_id.0.as_str().to_string();
        let member_id = if r.member_id.is_empty() {
            groups.next_member += 1;
            format!("member-{}", groups.next_member)
        } else {
            r.member_id.as_str().to_string()
        };
        let g = groups.groups.entry(group_id.clone()).or_default();
        let instance_id = r.group_instance_id.as_ref().map(|i| i.as_str().to_string());
        if !r.member_id.is_empty() && g.fenced(r.group_instance_id.as_ref(), &member_id) {
            return JoinGroupResponse::default()
                .with_error_code(ResponseError::FencedInstanceId.code())
                .with_member_id(r.member_id);
        }
        if !r.member_id.is_empty() && !g.members.contains_key(&member_id) {
            return JoinGroupResponse::default()
                .with_error_code(ResponseError::UnknownMemberId.code())
                .with_member_id(r.member_id);
        }
        if !g.protocol_type.is_empty()
            && !g.members.is_empty()
            && g.protocol_type != r.protocol_type.as_str()
        {
            return JoinGroupResponse::default()
                .with_error_code(ResponseError::InconsistentGroupProtocol.code());
        }
        g.protocol_type = r.protocol_type.as_str().to_string();
        let protocols: Vec<(String, Bytes)> = r
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_string(), p.metadata.clone()))
            .collect();
        // Step 1: a known static member back under a new member id takes its old place.
        let mut replaced = None;
        if let Some(instance) = &instance_id {
            if let Some(old_id) = g.static_members.get(instance).cloned() {
                if old_id != member_id {
                    if let Some(mut old) = g.members.remove(&old_id) {
                        // Step 2: the old incarnation is fenced.
                        if let Some(tx) = old.pending_join.take() {
                            let _ = tx.send(
                                JoinGroupResponse::default()
                                    .with_error_code(ResponseError::FencedInstanceId.code()),
                            );
                        }
                        if let Some(tx) = old.pending_sync.take() {
                            let _ = tx.send(
                                SyncGroupResponse::default()
                                    .with_error_code(ResponseError::FencedInstanceId.code()),
                            );
                        }
                        replaced = Some((old_id, old));
                    }
                }
            }
            g.static_members.insert(instance.clone(), member_id.clone());
        }
        if let Some((old_id, old)) = replaced {
            let was_leader = g.leader.as_deref() == Some(old_id.as_str());
            // As Kafka: no rebalance while the group's protocol would stay the one chosen (the
            // metadata may differ: a cooperative member back from a restart owns nothing).
            let keeps_protocol = protocols
                .iter()
                .any(|(name, _)| Some(name) == g.protocol.as_ref());
            if g.phase == Phase::Stable && !was_leader && keeps_protocol {
                g.members.insert(
                    member_id.clone(),
                    Member {
                        protocols,
                        session_timeout: millis(r.session_timeout_ms),
                        rebalance_timeout: millis(r.rebalance_timeout_ms.max(r.session_timeout_ms)),
                        last_heartbeat: Instant::now(),
                        pending_join: None,
                        pending_sync: None,
                        assignment: old.assignment,
                        client,
                    },
                );
                return JoinGroupResponse::default()
                    .with_generation_id(g.generation)
                    .with_protocol_type(Some(s(&g.protocol_type)))
                    .with_protocol_name(g.protocol.as_deref().map(s))
                    .with_leader(s(g.leader.as_deref().unwrap_or_default()))
                    .with_member_id(s(&member_id));
            }
            if was_leader {
                g.leader = Some(member_id.clone());
            }
        }
        let (tx, rx) = oneshot::channel();
        let member = Member {
            protocols,
            session_timeout: millis(r.session_timeout_ms),
            rebalance_timeout: millis(r.rebalance_timeout_ms.max(r.session_timeout_ms)),
            last_heartbeat: Instant::now(),
            pending_join: Some(tx),
            pending_sync: None,
            assignment: Bytes::new(),
            client,
        };
        g.members.insert(member_id, member);
        begin_rebalance(shared, &group_id, g);
        if g.members.values().all(|m| m.pending_join.is_some()) {
            complete_join(g);
        }
        rx
    };
    rx.await.unwrap_or_else(|_| {
        JoinGroupResponse::default().with_error_code(ResponseError::UnknownMemberId.code())
    })
}

pub(crate) async fn sync_group(shared: &Arc<Shared>, r: SyncGroupRequest) -> SyncGroupResponse {
    let rx = {
        let mut groups = shared.groups.lock();
        let Some(g) = groups.groups.get_mut(r.group_id.0.as_str()) else {
            return SyncGroupResponse::default()
                .with_error_code(ResponseError::UnknownMemberId.code());
        };
        let member_id = r.member_id.as_str().to_string();
        if g.fenced(r.group_instance_id.as_ref(), &member_id) {
            return SyncGroupResponse::default()
                .with_error_code(ResponseError::FencedInstanceId.code());
        }
        if !g.members.contains_key(&member_id) {
            return SyncGroupResponse::default()
                .with_error_code(ResponseError::UnknownMemberId.code());
        }
        if g.phase == Phase::PreparingRebalance {
            return SyncGroupResponse::default()
                .with_error_code(ResponseError::RebalanceInProgress.code());
        }
        if r.generation_id != g.generation {
            return SyncGroupResponse::default()
                .with_error_code(ResponseError::IllegalGeneration.code());
        }
        let protocol = (g.protocol_type.clone(), g.protocol.clone());
        let reply = |assignment: Bytes| {
            SyncGroupResponse::default()
                .with_protocol_type(Some(s(&protocol.0)))
                .with_protocol_name(protocol.1.as_deref().map(s))
                .with_assignment(assignment)
        };
        if g.leader.as_deref() == Some(member_id.as_str()) && g.phase == Phase::AwaitingSync {
            for a in &r.assignments {
                if let Some(m) = g.members.get_mut(a.member_id.as_str()) {
                    m.assignment = a.assignment.clone();
                }
            }
            g.phase = Phase::Stable;
            for m in g.members.values_mut() {
                if let Some(tx) = m.pending_sync.take() {
                    let _ = tx.send(reply(m.assignment.clone()));
                }
            }
        }
        let m = g.members.get_mut(&member_id).expect("checked above");
        m.last_heartbeat = Instant::now();
        if g.phase == Phase::Stable {
            return reply(m.assignment.clone());
        }
        let (tx, rx) = oneshot::channel();
        m.pending_sync = Some(tx);
        rx
    };
    rx.await.unwrap_or_else(|_| {
        SyncGroupResponse::default().with_error_code(ResponseError::RebalanceInProgress.code())
    })
}

pub(crate) fn heartbeat(shared: &Arc<Shared>, r: HeartbeatRequest) -> HeartbeatResponse {
    let mut groups = shared.groups.lock();
    let error = match groups.groups.get_mut(r.group_id.0.as_str()) {
        None => ResponseError::UnknownMemberId.code(),
        Some(g) if g.fenced(r.group_instance_id.as_ref(), r.member_id.as_str()) => {
            ResponseError::FencedInstanceId.code()
        }
        Some(g) => match g.members.get_mut(r.member_id.as_str()) {
            None => ResponseError::UnknownMemberId.code(),
            Some(m) => {
                m.last_heartbeat = Instant::now();
                if g.phase == Phase::PreparingRebalance {
                    ResponseError::RebalanceInProgress.code()
                } else if r.generation_id != g.generation {
                    ResponseError::IllegalGeneration.code()
                } else {
                    0
                }
            }
        },
    };
    HeartbeatResponse::default().with_error_code(error)
}

pub(crate) fn leave_group(shared: &Arc<Shared>, r: LeaveGroupRequest) -> LeaveGroupResponse {
    let mut groups = shared.groups.lock();
    let group_id = r.group_id.0.as_str().to_string();
    let mut leaving: Vec<(String, Option<StrBytes>)> = r
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.as_str().to_string(),
                m.group_instance_id.clone(),
            )
        })
        .collect();
    if !r.member_id.is_empty() {
        leaving.push((r.member_id.as_str().to_string(), None));
    }
    let Some(g) = groups.groups.get_mut(&group_id) else {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::UnknownMemberId.code());
    };
    let mut responses = Vec::new();
    let mut departed = false;
    for (id, instance) in leaving {
        // Step 3: a static member may leave by its instance id alone.
        let id = match (&instance, id.is_empty()) {
            (Some(i), true) => g
                .static_members
                .get(i.as_str())
                .cloned()
                .unwrap_or_default(),
            _ => id,
        };
        let code = if g.fenced(instance.as_ref(), &id) {
            ResponseError::FencedInstanceId.code()
        } else if g.members.remove(&id).is_some() {
            departed = true;
            0
        } else {
            ResponseError::UnknownMemberId.code()
        };
        g.retain_members(|_| true);
        responses.push(
            MemberResponse::default()
                .with_member_id(s(&id))
                .with_group_instance_id(instance)
                .with_error_code(code),
        );
    }
    if departed {
        after_departure(shared, &group_id, g);
    }
    LeaveGroupResponse::default().with_members(responses)
}

fn after_departure(shared: &Arc<Shared>, group_id: &str, g: &mut Group) {
    if g.members.is_empty() {
        g.phase = Phase::Empty;
        g.leader = None;
    } else {
        begin_rebalance(shared, group_id, g);
        if g.members.values().all(|m| m.pending_join.is_some()) {
            complete_join(g);
        }
    }
}

/// Removes members whose session timed out (those waiting in a join are covered by the
/// rebalance timeout instead), every 100 ms.
pub(crate) async fn expire_sessions(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut groups = shared.groups.lock();
        let now = Instant::now();
        let ids: Vec<String> = groups.groups.keys().cloned().collect();
        for id in ids {
            let Some(g) = groups.groups.get_mut(&id) else {
                continue;
            };
            let before = g.members.len();
            g.retain_members(|m| {
                m.pending_join.is_some()
                    || now.duration_since(m.last_heartbeat) <= m.session_timeout
            });
            if g.members.len() != before {
                tracing::info!(group = %id, "{} member(s) timed out", before - g.members.len());
                after_departure(&shared, &id, g);
            }
        }
    }
}
