//! Two `eddy run` worker processes share a repartition + count topology (plain, and per 1-second
//! window) under exactly-once; a worker is SIGKILLed and restarted three times, at random points,
//! while input flows. read_committed outputs have no duplicate and no gap: each key's counts only
//! grow, by the oracle's steps, to its total; the committed changelog of the count store replays
//! to the oracle's totals too, and every worker's local stores are exactly their changelogs
//! replayed up to their checkpoints. A killed and restarted single worker restores only the
//! un-checkpointed tail of its changelogs.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rand::Rng;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

mod common;
use common::workers::{
    assert_exactly_once, kill_rng, last_progress, line, replay_changelog, send_lines, worker,
    worker_with_output, Counting,
};

const BASE_MS: i64 = 1_767_225_600_000;

#[test]
fn killed_workers_leave_no_duplicate_and_no_gap() {
    kill_workers(Counting {
        topology: "word-count",
        output: "word-counts",
        windowed: false,
    });
}

#[test]
fn killed_workers_leave_no_duplicate_and_no_gap_in_a_windowed_count() {
    kill_workers(Counting {
        topology: "windowed-word-count",
        output: "windowed-word-counts",
        windowed: true,
    });
}

fn kill_workers(spec: Counting) {
    // The log cleaner compacts the changelogs while tasks move and restore, as Kafka's does.
    let broker = EmbeddedBroker::start_with(eddy_testkit::BrokerConfig {
        compaction_interval: Some(Duration::from_millis(200)),
        ..Default::default()
    })
    .unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("text-lines", 4);
    broker.create_topic(spec.output, 4);
    let dir = tempfile::tempdir().unwrap();
    let mut workers = vec![
        worker(spec.topology, &bootstrap, dir.path(), 0),
        worker(spec.topology, &bootstrap, dir.path(), 1),
    ];

    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let mut oracle: BTreeMap<String, i64> = BTreeMap::new();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    // Random kill points (which batch, which worker, how far into the pause), reproducible with
    // EDDY_KILL_SEED.
    let mut rng = kill_rng();
    let mut kill_batches = std::collections::BTreeSet::new();
    while kill_batches.len() < 3 {
        kill_batches.insert(rng.random_range(2..22));
    }
    let mut kills = 0;
    for batch in 0..24 {
        for i in 0..50 {
            let n = batch * 50 + i;
            let line = line(&words, n);
            // 10 ms of event time per line: a batch of 50 spans half a window.
            let ts = BASE_MS + n as i64 * 10;
            for w in &line {
                let key = if spec.windowed {
                    format!("{w}@{}", ts - ts.rem_euclid(1000))
                } else {
                    w.to_string()
                };
                *oracle.entry(key).or_default() += 1;
            }
            producer
                .send(
                    BaseRecord::to("text-lines")
                        .key(&format!("l{n}"))
                        .payload(&line.join(" "))
                        .timestamp(ts),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let pause = rng.random_range(0..300);
        if kill_batches.contains(&batch) {
            // SIGKILL a worker somewhere in the processing of this batch, and start it again.
            let victim = rng.random_range(0..workers.len());
            std::thread::sleep(Duration::from_millis(pause));
            workers[victim].kill().unwrap();
            workers[victim].wait().unwrap();
            workers[victim] = worker(spec.topology, &bootstrap, dir.path(), victim);
            kills += 1;
        } else {
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    assert_eq!(kills, 3);

    let c = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == spec.output
    });
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
    let replayed = replay_changelog(&bootstrap, spec);
    assert_exactly_once(&seen, &oracle);
    assert_eq!(
        replayed, oracle,
        "the committed changelog of the count store replays to the oracle's totals"
    );
    // A worker that never owned a counting task has no state directory.
    for n in 0..workers.len() {
        let app_dir = dir.path().join(format!("state-{n}")).join(spec.topology);
        if !app_dir.exists() {
            continue;
        }
        let local =
            eddy_testkit::local_state_matches_changelogs(&bootstrap, spec.topology, &app_dir)
                .unwrap_or_else(|e| panic!("worker {n}: {e}"));
        eprintln!("worker {n}: {local:?}");
    }
    // Checkpoints are not asserted here: after a late kill the tasks may sit, at the final SIGKILL,
    // on a worker that has not committed them locally yet (seen once in CI: 4 stores, none
    // checkpointed, every exactly-once check above passing). The line per worker above shows
    // them; `a_killed_worker_restores_only_the_tail_after_its_checkpoint` asserts them.
}

/// One worker counts words; it is SIGKILLed at a random point while input flows and started
/// again on the same state directory. Its stores come back from their checkpoints: the restore
/// counter shows at most one transaction's changelog records (the one that may have committed in
/// Kafka just before the kill, before it reached RocksDB), far fewer than the changelog holds.
#[test]
fn a_killed_worker_restores_only_the_tail_after_its_checkpoint() {
    let spec = Counting {
        topology: "word-count",
        output: "word-counts",
        windowed: false,
    };
    // No log cleaner: the test compares the restore with the changelog's full length.
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("text-lines", 4);
    broker.create_topic(spec.output, 4);
    let dir = tempfile::tempdir().unwrap();
    let out = |incarnation: usize| dir.path().join(format!("progress-{incarnation}.txt"));
    let start = |incarnation: usize| {
        let file = std::fs::File::create(out(incarnation)).unwrap();
        worker_with_output(
            spec.topology,
            &bootstrap,
            dir.path(),
            0,
            Stdio::from(file),
            "",
        )
    };
    let mut worker = start(0);
    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut rng = kill_rng();
    let kill_batch = rng.random_range(4..8);
    let mut oracle: BTreeMap<String, i64> = BTreeMap::new();
    // Batch `batch`: 50 lines of two words each, counted in the oracle.
    let send_batch = |batch: usize, oracle: &mut BTreeMap<String, i64>| {
        let words_of = |n| line(&words, n).iter().map(|w| w.to_string()).collect();
        send_lines(&producer, batch * 50..(batch + 1) * 50, words_of, oracle);
    };
    for batch in 0..12 {
        send_batch(batch, &mut oracle);
        if batch == kill_batch {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            worker.kill().unwrap();
            worker.wait().unwrap();
            worker = start(1);
        } else {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let c = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == spec.output
    });
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    // The counts read into `last` until they are the oracle's (or two minutes pass).
    let read_until = |last: &mut BTreeMap<String, i64>, oracle: &BTreeMap<String, i64>| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && last != oracle {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                let word = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                let count = i64::from_be_bytes(m.payload().unwrap().try_into().unwrap());
                last.insert(word, count);
            }
        }
    };
    read_until(&mut last, &oracle);
    assert_eq!(last, oracle, "final counts");
    // The restarted worker is caught up; a few more batches, each its own transaction, so that
    // the changelog holds many more than the one a restore may read (however long the restart
    // waited for the killed member's session to time out, with the backlog in one commit).
    for batch in 12..18 {
        send_batch(batch, &mut oracle);
        std::thread::sleep(Duration::from_millis(300));
    }
    read_until(&mut last, &oracle);
    assert_eq!(last, oracle, "final counts after the restart");
    // One more progress line (every 2 s) after the last output, then stop the worker.
    std::thread::sleep(Duration::from_millis(2_500));
    worker.kill().unwrap();
    worker.wait().unwrap();
    let progress = std::fs::read_to_string(out(1)).unwrap();
    let (_, restored) = last_progress(&progress, spec.topology)
        .unwrap_or_else(|| panic!("no progress line from the restarted worker:\n{progress}"));
    let suffix = format!("-{}-changelog", spec.output);
    let in_changelog =
        eddy_testkit::count_records(&bootstrap, "read_committed", |t| t.ends_with(&suffix));
    eprintln!("restored {restored} of {in_changelog} changelog records");
    assert!(
        restored <= words.len() as u64,
        "the restarted worker read {restored} changelog records: more than one transaction's"
    );
    assert!(
        in_changelog >= 4 * words.len(),
        "the changelog holds many transactions ({in_changelog} records)"
    );
    let local = eddy_testkit::local_state_matches_changelogs(
        &bootstrap,
        spec.topology,
        &dir.path().join("state-0").join(spec.topology),
    )
    .unwrap();
    assert!(local.checkpointed > 0, "{local:?}");
}
