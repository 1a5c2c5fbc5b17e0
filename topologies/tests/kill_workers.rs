//! Two `eddy run` worker processes share a repartition + count topology under exactly-once; one
//! is SIGKILLed and restarted three times while input flows. read_committed outputs have no
//! duplicate and no gap: each word's counts only grow, by the oracle's steps, to its total.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

fn worker(bootstrap: &str, dir: &std::path::Path, n: usize) -> Child {
    let config = dir.join(format!("worker-{n}.properties"));
    let state = dir.join(format!("state-{n}"));
    let mut f = std::fs::File::create(&config).unwrap();
    writeln!(f, "processing.guarantee=exactly_once_v2\ncommit.interval.ms=100\ntransaction.timeout.ms=3000\nstate.dir={}", state.display()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", "word-count", "--brokers", bootstrap, "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn killed_workers_leave_no_duplicate_and_no_gap() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("text-lines", 4);
    broker.create_topic("word-counts", 4);
    let dir = tempfile::tempdir().unwrap();
    let mut workers = vec![
        worker(&bootstrap, dir.path(), 0),
        worker(&bootstrap, dir.path(), 1),
    ];

    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let mut oracle: BTreeMap<String, i64> = BTreeMap::new();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut kills = 0;
    for batch in 0..24 {
        for i in 0..50 {
            let n = batch * 50 + i;
            let line: Vec<&str> = (0..2)
                .map(|j| words[(n * 3 + j * 5) % words.len()])
                .collect();
            for w in &line {
                *oracle.entry(w.to_string()).or_default() += 1;
            }
            producer
                .send(
                    BaseRecord::to("text-lines")
                        .key(&format!("l{n}"))
                        .payload(&line.join(" ")),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        // SIGKILL worker 0 at a few points mid-stream, and start it again.
        if [5, 11, 17].contains(&batch) {
            workers[0].kill().unwrap();
            workers[0].wait().unwrap();
            workers[0] = worker(&bootstrap, dir.path(), 0);
            kills += 1;
        }
    }
    assert_eq!(kills, 3);

    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "verifier")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset("word-counts", p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = |s: &BTreeMap<String, Vec<i64>>| {
        oracle
            .iter()
            .all(|(w, n)| s.get(w).and_then(|c| c.last()) == Some(n))
    };
    while Instant::now() < deadline && !done(&seen) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            let word = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let count = m
                .payload()
                .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
                .unwrap_or(-1);
            seen.entry(word).or_default().push(count);
        }
    }
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    for (word, total) in &oracle {
        let counts = seen
            .get(word)
            .unwrap_or_else(|| panic!("no counts for {word}"));
        assert_eq!(counts.last(), Some(total), "{word}: {counts:?}");
        assert!(
            counts.windows(2).all(|w| w[0] < w[1]),
            "{word} counted twice somewhere: {counts:?}"
        );
    }
}
