//! A zombie worker (KIP-447): two `eddy run` workers count words under exactly-once while input
//! flows; one is paused (SIGSTOP) past its session timeout, so the other takes its partitions,
//! and then resumed (SIGCONT) with a transaction open and the group's old generation. Nothing it
//! commits may become visible: read_committed counts per word only grow by one and end at the
//! oracle's totals, and reading goes on after they reach them so that a late duplicate is seen.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// A worker whose transactions outlive the pause (60 s timeout), so that the zombie still holds
/// an open transaction when it wakes up.
fn worker(bootstrap: &str, dir: &std::path::Path, n: usize) -> Child {
    let config = dir.join(format!("worker-{n}.properties"));
    let state = dir.join(format!("state-{n}"));
    let mut f = std::fs::File::create(&config).unwrap();
    writeln!(
        f,
        "processing.guarantee=exactly_once_v2\ncommit.interval.ms=100\ntransaction.timeout.ms=60000\nstate.dir={}",
        state.display()
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", "word-count", "--brokers", bootstrap, "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

#[test]
fn a_paused_zombie_worker_commits_nothing_visible() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("text-lines", 4);
    broker.create_topic("word-counts", 4);
    let dir = tempfile::tempdir().unwrap();
    let mut workers = [
        worker(&bootstrap, dir.path(), 0),
        worker(&bootstrap, dir.path(), 1),
    ];
    let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
    let mut oracle: BTreeMap<String, i64> = BTreeMap::new();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut n = 0usize;
    let mut send_for = |oracle: &mut BTreeMap<String, i64>, how_long: Duration| {
        // A line every 10 ms: the workers always have a transaction open with records in it.
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            let word = words[n % words.len()];
            *oracle.entry(word.to_string()).or_default() += 1;
            producer
                .send(
                    BaseRecord::to("text-lines")
                        .key(&format!("l{n}"))
                        .payload(word),
                )
                .unwrap();
            producer.poll(Duration::ZERO);
            n += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    // Both workers join and count.
    send_for(&mut oracle, Duration::from_secs(8));
    // Pause worker 0 past its 10 s session timeout while input flows; worker 1 takes over.
    signal(&workers[0], "-STOP");
    send_for(&mut oracle, Duration::from_secs(16));
    // The zombie wakes up with its open transaction and the old generation.
    signal(&workers[0], "-CONT");
    send_for(&mut oracle, Duration::from_secs(6));

    let c = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == "word-counts"
    });
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let read = |seen: &mut BTreeMap<String, Vec<i64>>, until: Instant, stop_at_oracle: bool| {
        while Instant::now() < until {
            if stop_at_oracle
                && oracle
                    .iter()
                    .all(|(w, n)| seen.get(w).and_then(|c| c.last()) == Some(n))
            {
                return;
            }
            if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                let word = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                let count = i64::from_be_bytes(m.payload().unwrap().try_into().unwrap());
                seen.entry(word).or_default().push(count);
            }
        }
    };
    read(&mut seen, Instant::now() + Duration::from_secs(120), true);
    // Go on reading: a zombie's late commit would show up as a count past the oracle's.
    read(&mut seen, Instant::now() + Duration::from_secs(5), false);
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    for (word, total) in &oracle {
        let counts = seen
            .get(word)
            .unwrap_or_else(|| panic!("no counts for {word}"));
        assert!(
            counts.windows(2).all(|w| w[0] < w[1]),
            "{word} counted twice somewhere (a zombie's commit became visible): {:?}",
            counts.windows(2).find(|w| w[0] >= w[1])
        );
        assert_eq!(counts.last(), Some(total), "{word}: final count");
    }
}
