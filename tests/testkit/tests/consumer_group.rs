//! A consumer group driven by rdkafka against the embedded broker: members join, leave and time
//! out; partitions move; committed offsets stay.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use eddy_testkit::EmbeddedBroker;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolSubscription, GroupId, JoinGroupRequest, RequestHeader,
};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::TopicPartitionList;

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    consumer_with(bootstrap, group, "range")
}

fn consumer_with(bootstrap: &str, group: &str, strategy: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("session.timeout.ms", "1500")
        .set("heartbeat.interval.ms", "100")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", strategy)
        .create()
        .unwrap();
    c.subscribe(&["orders"]).unwrap();
    c
}

fn assigned(c: &BaseConsumer) -> usize {
    c.assignment().map(|a| a.count()).unwrap_or(0)
}

/// Polls every consumer until their assignment sizes are `want` (in order), or fails.
fn converge(consumers: &[&BaseConsumer], want: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(20));
        }
        let sizes: Vec<usize> = consumers.iter().map(|c| assigned(c)).collect();
        if sizes == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "assignments {sizes:?}, wanted {want:?}"
        );
    }
}

/// Joins the group with a raw JoinGroup and then never heartbeats: a member that dies.
fn silent_member(bootstrap: &str, group: &str) -> std::net::TcpStream {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("orders")]);
    let mut metadata = BytesMut::new();
    metadata.put_i16(0);
    subscription.encode(&mut metadata, 0).unwrap();
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(1_500)
        .with_rebalance_timeout_ms(3_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(metadata.freeze())]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::JoinGroup as i16)
        .with_request_api_version(5)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("silent")));
    let mut body = BytesMut::new();
    encode_request_header_into_buffer(&mut body, &header).unwrap();
    request.encode(&mut body, 5).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let mut s = std::net::TcpStream::connect(bootstrap).unwrap();
    s.write_all(&frame).unwrap();
    s
}

#[test]
fn a_group_rebalances_as_members_join_leave_and_time_out() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("orders", 6);
    let bootstrap = broker.bootstrap();
    let a = consumer(&bootstrap, "g");
    converge(&[&a], &[6]);

    // A commits an offset; it must survive every rebalance below.
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("orders", 0, rdkafka::Offset::Offset(42))
        .unwrap();
    a.commit(&commit, CommitMode::Sync).unwrap();

    let b = consumer(&bootstrap, "g");
    let c = consumer(&bootstrap, "g");
    converge(&[&a, &b, &c], &[2, 2, 2]);

    drop(c); // close: LeaveGroup
    converge(&[&a, &b], &[3, 3]);

    // A member that joins and then goes silent is dropped after its session timeout.
    let mut silent = silent_member(&bootstrap, "g");
    let started = Instant::now();
    let mut joined = false;
    while started.elapsed() < Duration::from_secs(10) {
        for cons in [&a, &b] {
            let _ = cons.poll(Duration::from_millis(20));
        }
        if assigned(&a) + assigned(&b) < 6 {
            joined = true; // the silent member got partitions for a while
        }
        if joined && assigned(&a) == 3 && assigned(&b) == 3 {
            break;
        }
    }
    assert!(joined, "the silent member took part in a rebalance");
    converge(&[&a, &b], &[3, 3]);
    let mut sink = [0u8; 1024];
    silent
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let _ = silent.read(&mut sink);

    let committed = b.committed(Duration::from_secs(5)).unwrap();
    let offsets: BTreeMap<i32, rdkafka::Offset> = committed
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    if let Some(offset) = offsets.get(&0) {
        assert_eq!(*offset, rdkafka::Offset::Offset(42));
    }
    let mut query = TopicPartitionList::new();
    query.add_partition("orders", 0);
    let kept = a.committed_offsets(query, Duration::from_secs(5)).unwrap();
    assert_eq!(
        kept.elements()[0].offset(),
        rdkafka::Offset::Offset(42),
        "committed offsets survive rebalances"
    );
}

#[test]
fn a_cooperative_group_moves_partitions_incrementally() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("orders", 6);
    let bootstrap = broker.bootstrap();
    let a = consumer_with(&bootstrap, "coop", "cooperative-sticky");
    converge(&[&a], &[6]);
    let b = consumer_with(&bootstrap, "coop", "cooperative-sticky");
    converge(&[&a, &b], &[3, 3]);
    drop(b);
    converge(&[&a], &[6]);
}

/// DescribeGroups (librdkafka's group list, as `kafka-consumer-groups --describe` reads it): a
/// stable group names each member's client id and host, and its assignment covers every
/// partition once; an unknown group is not listed.
#[test]
fn a_stable_group_describes_its_members_and_their_assignments() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("orders", 4);
    let bootstrap = broker.bootstrap();
    let named = |client_id: &str| -> BaseConsumer {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "described")
            .set("client.id", client_id)
            .set("session.timeout.ms", "1500")
            .set("heartbeat.interval.ms", "100")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        c.subscribe(&["orders"]).unwrap();
        c
    };
    let (a, b) = (named("member-a"), named("member-b"));
    converge(&[&a, &b], &[2, 2]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let group = loop {
        let _ = (
            a.poll(Duration::from_millis(10)),
            b.poll(Duration::from_millis(10)),
        );
        let list = a
            .fetch_group_list(Some("described"), Duration::from_secs(5))
            .unwrap();
        let group = list.groups().first().map(|g| {
            let members: Vec<(String, String, Vec<u8>)> = g
                .members()
                .iter()
                .map(|m| {
                    (
                        m.client_id().to_string(),
                        m.client_host().to_string(),
                        m.assignment().unwrap_or_default().to_vec(),
                    )
                })
                .collect();
            (g.state().to_string(), g.protocol().to_string(), members)
        });
        match group {
            Some(g) if g.0 == "Stable" => break g,
            other => assert!(Instant::now() < deadline, "group described as {other:?}"),
        }
    };
    assert_eq!(group.1, "range");
    let mut clients: Vec<&str> = group.2.iter().map(|m| m.0.as_str()).collect();
    clients.sort();
    assert_eq!(clients, ["member-a", "member-b"]);
    assert!(
        group.2.iter().all(|m| m.1.contains("127.0.0.1")),
        "{group:?}"
    );
    let mut partitions: Vec<i32> = group
        .2
        .iter()
        .flat_map(|m| {
            let raw = bytes::Bytes::from(m.2.clone());
            let mut body = raw.slice(2..);
            let version = i16::from_be_bytes([raw[0], raw[1]]);
            use kafka_protocol::protocol::Decodable;
            kafka_protocol::messages::ConsumerProtocolAssignment::decode(&mut body, version)
                .unwrap()
                .assigned_partitions
                .into_iter()
                .flat_map(|t| t.partitions)
        })
        .collect();
    partitions.sort();
    assert_eq!(partitions, [0, 1, 2, 3], "each partition assigned once");

    let unknown = a
        .fetch_group_list(Some("nobody-here"), Duration::from_secs(5))
        .unwrap();
    // librdkafka describes only the groups ListGroups names: an unknown one is not listed (the
    // broker's `Dead` answer to DescribeGroups is its unit test's).
    assert!(unknown.groups().is_empty());
}
