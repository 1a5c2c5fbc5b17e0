//! DescribeGroups and ListGroups: what a group coordinator tells about its groups. As Kafka, a
//! member's protocol metadata and assignment (and the group's protocol) are told only while the
//! group is stable (during a rebalance they are being replaced); a group whose members all left
//! is `Empty`, an unknown one `Dead`.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
};

use super::{s, Group, Phase};
use crate::Shared;

/// The state names Kafka's coordinator reports (`CompletingRebalance` is its name for a group
/// waiting for the leader's SyncGroup).
fn state_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Empty => "Empty",
        Phase::PreparingRebalance => "PreparingRebalance",
        Phase::AwaitingSync => "CompletingRebalance",
        Phase::Stable => "Stable",
    }
}

fn describe(id: &GroupId, group: Option<&Group>, operations: bool) -> DescribedGroup {
    let Some(g) = group else {
        return DescribedGroup::default()
            .with_group_id(id.clone())
            .with_group_state(s("Dead"));
    };
    let stable = g.phase == Phase::Stable;
    let instance_of = |member: &str| {
        g.static_members
            .iter()
            .find(|(_, m)| m.as_str() == member)
            .map(|(instance, _)| s(instance))
    };
    let members = g
        .members
        .iter()
        .map(|(member_id, m)| {
            let (metadata, assignment) = if stable {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(name, _)| Some(name) == g.protocol.as_ref())
                    .map(|(_, metadata)| metadata.clone())
                    .unwrap_or_default();
                (metadata, m.assignment.clone())
            } else {
                (Bytes::new(), Bytes::new())
            };
            DescribedGroupMember::default()
                .with_member_id(s(member_id))
                .with_group_instance_id(instance_of(member_id))
                .with_client_id(s(&m.client.id))
                .with_client_host(s(&m.client.host))
                .with_member_metadata(metadata)
                .with_member_assignment(assignment)
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(id.clone())
        .with_group_state(s(state_name(g.phase)))
        .with_protocol_type(s(&g.protocol_type))
        // As Kafka: no protocol while the group rebalances.
        .with_protocol_data(s(if stable {
            g.protocol.as_deref().unwrap_or_default()
        } else {
            ""
        }))
        .with_members(members)
        .with_authorized_operations(if operations {
            GROUP_OPERATIONS
        } else {
            i32::MIN
        })
}

/// What a client may do with a group, as a broker without an authorizer answers when asked
/// (`include_authorized_operations`): READ (3), DELETE (6) and DESCRIBE (8); INT32_MIN means
/// "not asked".
const GROUP_OPERATIONS: i32 = 1 << 3 | 1 << 6 | 1 << 8;

pub(crate) fn describe_groups(
    shared: &Arc<Shared>,
    r: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = shared.groups.lock();
    let described = r
        .groups
        .iter()
        .map(|id| {
            describe(
                id,
                groups.groups.get(id.0.as_str()),
                r.include_authorized_operations,
            )
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(described)
}

pub(crate) fn list_groups(shared: &Arc<Shared>, r: ListGroupsRequest) -> ListGroupsResponse {
    let groups = shared.groups.lock();
    let wanted = |state: &str| {
        r.states_filter.is_empty() || r.states_filter.iter().any(|f| f.as_str() == state)
    };
    let listed = groups
        .groups
        .iter()
        .filter(|(_, g)| wanted(state_name(g.phase)))
        .map(|(id, g)| {
            ListedGroup::default()
                .with_group_id(GroupId(s(id)))
                .with_protocol_type(s(&g.protocol_type))
                .with_group_state(s(state_name(g.phase)))
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_group_is_dead() {
        let d = describe(&GroupId(s("nobody")), None, false);
        assert_eq!(d.group_state.as_str(), "Dead");
        assert_eq!(d.error_code, 0);
        assert!(d.members.is_empty());
    }

    #[test]
    fn a_rebalancing_group_tells_no_assignment() {
        let mut g = Group {
            phase: Phase::PreparingRebalance,
            protocol: Some("range".into()),
            protocol_type: "consumer".into(),
            ..Group::default()
        };
        g.members.insert(
            "m-1".into(),
            super::super::Member {
                protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
                session_timeout: std::time::Duration::from_secs(10),
                rebalance_timeout: std::time::Duration::from_secs(10),
                last_heartbeat: tokio::time::Instant::now(),
                pending_join: None,
                pending_sync: None,
                assignment: Bytes::from_static(b"assigned"),
                client: super::super::Client {
                    id: "app-1".into(),
                    host: "/127.0.0.1".into(),
                },
            },
        );
        let d = describe(&GroupId(s("g")), Some(&g), true);
        assert_eq!(d.group_state.as_str(), "PreparingRebalance");
        assert_eq!(
            d.protocol_data.as_str(),
            "",
            "no protocol while rebalancing"
        );
        assert_eq!(d.authorized_operations, GROUP_OPERATIONS);
        assert_eq!(d.members.len(), 1);
        assert!(d.members[0].member_assignment.is_empty());
        assert_eq!(d.members[0].client_id.as_str(), "app-1");
        g.phase = Phase::Stable;
        let d = describe(&GroupId(s("g")), Some(&g), false);
        assert_eq!(d.group_state.as_str(), "Stable");
        assert_eq!(d.protocol_data.as_str(), "range");
        assert_eq!(d.authorized_operations, i32::MIN);
        assert_eq!(&d.members[0].member_assignment[..], b"assigned");
        assert_eq!(&d.members[0].member_metadata[..], b"meta");
    }
}
