//! Which instance keeps which standby: read from the consumer group's membership, decided by one
//! rule that every instance applies alike, so that no instance has to tell another.
//!
//! 1. The group is described (DescribeGroups); only a `Stable` group's assignments are final.
//! 2. Each member's client id names its instance (`clients.rs` owns the naming); its assignment
//!    (the consumer protocol's) names its partitions, hence the tasks that instance runs.
//! 3. Each stateful task gets its standbys on `replicas` of the other instances: those
//!    instances in order, rotated by the task, so that one owner's standbys spread over the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::error::{EngineError, Result};
use crate::runtime::clients::process_of_client_id;
use crate::task::TaskId;

/// Which instance (process id) runs which tasks, from a stable group.
pub(crate) type Membership = BTreeMap<String, BTreeSet<TaskId>>;

/// The partitions a consumer protocol assignment (`ConsumerProtocolAssignment`, v0 to v3:
/// version, `[topic [partition]]`, user data) names; `None` if it cannot be read. Decoded here
/// rather than by the protocol crate, whose decoders reserve memory for whatever length the
/// bytes claim.
pub(crate) fn assigned_partitions(raw: &[u8]) -> Option<Vec<(String, i32)>> {
    fn take<'a>(raw: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (raw.get(..n)?, raw.get(n..)?);
        *raw = tail;
        Some(head)
    }
    fn int32(raw: &mut &[u8]) -> Option<i32> {
        Some(i32::from_be_bytes(take(raw, 4)?.try_into().ok()?))
    }
    if raw.is_empty() {
        return Some(Vec::new());
    }
    let mut raw = raw;
    let _version = take(&mut raw, 2)?;
    let topics = int32(&mut raw)?;
    let mut partitions = Vec::new();
    for _ in 0..topics.max(0) {
        let len = i16::from_be_bytes(take(&mut raw, 2)?.try_into().ok()?);
        let topic = std::str::from_utf8(take(&mut raw, usize::try_from(len).ok()?)?).ok()?;
        let count = int32(&mut raw)?;
        for _ in 0..count.max(0) {
            partitions.push((topic.to_string(), int32(&mut raw)?));
        }
    }
    Some(partitions)
}

/// Step 1 and 2: the instances of the group `app` and their tasks, or `None` while the group
/// rebalances. `task_of` maps an input partition to its task.
pub(crate) fn membership(
    consumer: &BaseConsumer,
    app: &str,
    task_of: impl Fn(&str, i32) -> Option<TaskId>,
) -> Result<Option<Membership>> {
    let groups = consumer
        .fetch_group_list(Some(app), Duration::from_secs(5))
        .map_err(|e| EngineError::kafka(format!("describing group {app}"), e))?;
    let Some(group) = groups.groups().iter().find(|g| g.name() == app) else {
        return Ok(None);
    };
    if group.state() != "Stable" {
        return Ok(None);
    }
    let mut instances = Membership::new();
    for member in group.members() {
        let Some(process) = process_of_client_id(app, member.client_id()) else {
            continue;
        };
        let tasks = instances.entry(process.to_string()).or_default();
        let Some(partitions) = member.assignment().map(assigned_partitions) else {
            continue;
        };
        let Some(partitions) = partitions else {
            tracing::debug!(member = member.id(), "unreadable assignment");
            return Ok(None);
        };
        tasks.extend(partitions.iter().filter_map(|(t, p)| task_of(t, *p)));
    }
    Ok(Some(instances))
}

/// Step 3: the tasks among `stateful` that instance `me` keeps standbys of.
pub(crate) fn standbys_of(
    me: &str,
    membership: &Membership,
    stateful: impl Fn(TaskId) -> bool,
    replicas: usize,
) -> BTreeSet<TaskId> {
    let mut wanted = BTreeSet::new();
    if replicas == 0 {
        return wanted;
    }
    for (owner, tasks) in membership {
        let others: Vec<&String> = membership.keys().filter(|i| *i != owner).collect();
        if others.is_empty() {
            continue;
        }
        for &task in tasks.iter().filter(|t| stateful(**t)) {
            let rotate = task.subtopology + task.partition.unsigned_abs() as usize;
            let keeps_me = (0..replicas.min(others.len()))
                .map(|k| others[(rotate + k) % others.len()])
                .any(|i| i == me);
            if keeps_me {
                wanted.insert(task);
            }
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn task(subtopology: usize, partition: i32) -> TaskId {
        TaskId {
            subtopology,
            partition,
        }
    }

    fn encoded(version: i16, partitions: &[(&str, &[i32])]) -> Vec<u8> {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
            partitions
                .iter()
                .map(|(t, ps)| {
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps.to_vec())
                })
                .collect(),
        );
        let mut out = bytes::BytesMut::new();
        out.extend_from_slice(&version.to_be_bytes());
        assignment.encode(&mut out, version).unwrap();
        out.to_vec()
    }

    #[test]
    fn assignments_decode_at_every_version_and_garbage_is_refused() {
        for version in 0..=3 {
            let raw = encoded(version, &[("lines", &[0, 2]), ("clicks", &[1])]);
            assert_eq!(
                assigned_partitions(&raw).unwrap(),
                vec![
                    ("lines".to_string(), 0),
                    ("lines".to_string(), 2),
                    ("clicks".to_string(), 1)
                ]
            );
        }
        assert_eq!(assigned_partitions(&[]).unwrap(), vec![]);
        let raw = encoded(1, &[("lines", &[0, 1, 2])]);
        for cut in 3..raw.len() - 4 {
            // Truncated anywhere inside the partitions: an error, never a panic.
            let _ = assigned_partitions(&raw[..cut]);
        }
        // A length that claims more than there is.
        assert!(assigned_partitions(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_none());
        assert!(assigned_partitions(&[0]).is_none());
    }

    #[test]
    fn every_stateful_task_gets_its_replicas_elsewhere_spread_over_the_others() {
        let membership: Membership = [
            ("a", vec![task(0, 0), task(0, 3), task(1, 0)]),
            ("b", vec![task(0, 1), task(1, 1)]),
            ("c", vec![task(0, 2), task(1, 2), task(1, 3)]),
        ]
        .into_iter()
        .map(|(i, ts)| (i.to_string(), ts.into_iter().collect()))
        .collect();
        let stateful = |t: TaskId| t.subtopology == 1;
        for replicas in 0..=3 {
            let per: BTreeMap<&str, BTreeSet<TaskId>> = ["a", "b", "c"]
                .into_iter()
                .map(|i| (i, standbys_of(i, &membership, stateful, replicas)))
                .collect();
            for (owner, tasks) in &membership {
                for t in tasks {
                    let keepers: Vec<&str> = per
                        .iter()
                        .filter(|(_, s)| s.contains(t))
                        .map(|(i, _)| *i)
                        .collect();
                    let expected = if stateful(*t) { replicas.min(2) } else { 0 };
                    assert_eq!(keepers.len(), expected, "{t} with {replicas}: {keepers:?}");
                    assert!(!keepers.contains(&owner.as_str()), "{t} kept by its owner");
                }
            }
        }
        // One replica each: a's tasks 1_0 spreads differently from c's 1_2 and 1_3.
        let kept: Vec<usize> = ["a", "b", "c"]
            .iter()
            .map(|i| standbys_of(i, &membership, stateful, 1).len())
            .collect();
        assert_eq!(kept.iter().sum::<usize>(), 4);
        assert!(kept.iter().all(|&n| n <= 2), "{kept:?}");
        // Alone in the group: nobody to keep a copy.
        let alone: Membership = [("a".to_string(), [task(1, 0)].into())].into();
        assert!(standbys_of("a", &alone, stateful, 1).is_empty());
    }
}
