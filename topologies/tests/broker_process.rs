//! `eddy broker` as a process: SIGKILL it and start it again on the same data directory;
//! committed data and offsets are kept, aborted records stay invisible.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

/// Starts `eddy broker` and returns it with its bootstrap address.
fn start(data_dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["broker", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    (child, addr)
}

fn values(bootstrap: &str, topic: &str, expected: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && out.len() < expected {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    // A little longer, to catch anything that should not be there.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    out
}

#[test]
fn a_killed_broker_restarts_with_its_committed_data_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, bootstrap) = start(dir.path());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for r in rt
        .block_on(admin.create_topics(
            &[NewTopic::new("kept", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap()
    {
        r.unwrap();
    }
    let plain: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..20 {
        plain
            .send(BaseRecord::to("kept").key("k").payload(&format!("p{i}")))
            .unwrap();
    }
    plain.flush(Duration::from_secs(10)).unwrap();
    let txn: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "kept-txn")
        .create()
        .unwrap();
    txn.init_transactions(Duration::from_secs(10)).unwrap();
    txn.begin_transaction().unwrap();
    txn.send(BaseRecord::to("kept").key("k").payload("committed"))
        .unwrap();
    txn.flush(Duration::from_secs(10)).unwrap();
    txn.commit_transaction(Duration::from_secs(10)).unwrap();
    txn.begin_transaction().unwrap();
    txn.send(BaseRecord::to("kept").key("k").payload("aborted"))
        .unwrap();
    txn.flush(Duration::from_secs(10)).unwrap();
    txn.abort_transaction(Duration::from_secs(10)).unwrap();
    txn.begin_transaction().unwrap();
    txn.send(BaseRecord::to("kept").key("k").payload("open-at-kill"))
        .unwrap();
    txn.flush(Duration::from_secs(10)).unwrap();
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "kept-group")
        .create()
        .unwrap();
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("kept", 0, rdkafka::Offset::Offset(17))
        .unwrap();
    group.commit(&commit, CommitMode::Sync).unwrap();

    broker.kill().unwrap(); // SIGKILL
    broker.wait().unwrap();
    drop((plain, txn, group, admin));

    let (mut broker, bootstrap) = start(dir.path());
    let mut expected: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    expected.push("committed".into());
    assert_eq!(
        values(&bootstrap, "kept", expected.len()),
        expected,
        "the transaction open at the kill is aborted"
    );
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "kept-group")
        .create()
        .unwrap();
    let mut query = TopicPartitionList::new();
    query.add_partition("kept", 0);
    let committed = group
        .committed_offsets(query, Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        committed.elements()[0].offset(),
        rdkafka::Offset::Offset(17)
    );
    // The transactional id is known: a new instance is fenced in, not confused.
    let again: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "kept-txn")
        .create()
        .unwrap();
    again.init_transactions(Duration::from_secs(10)).unwrap();
    broker.kill().unwrap();
    broker.wait().unwrap();
}
