//! Scaling under load with standby replicas: `eddy run` worker processes of a word count under
//! exactly-once with `num.standby.replicas=1`.
//!
//! - A storm: three workers; every few seconds one is SIGKILLed and a new one (on a fresh state
//!   directory) added, while input flows. The read_committed counts have no duplicate and no
//!   gap and end at the oracle's totals; the committed changelog replays to them too; the
//!   standbys wrote changelog records.
//! - A counted take-over: two workers; once everything is counted and the standbys are quiet,
//!   the owner of half the tasks is SIGKILLed. The survivor resumes them from its standbys: it
//!   restores a handful of records, not the changelog's thousands.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rand::Rng;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::BaseProducer;

mod common;
use common::workers::{
    assert_exactly_once, kill_rng, last_progress, replay_changelog, send_lines, worker_with_output,
    Counting,
};

const SPEC: Counting = Counting {
    topology: "word-count",
    output: "word-counts",
    windowed: false,
};

const STANDBY: &str = "num.standby.replicas=1";

/// Worker `n`, its progress lines in `progress-<n>.txt`.
fn standby_worker(bootstrap: &str, dir: &std::path::Path, n: usize) -> std::process::Child {
    let out = std::fs::File::create(dir.join(format!("progress-{n}.txt"))).unwrap();
    worker_with_output(SPEC.topology, bootstrap, dir, n, Stdio::from(out), STANDBY)
}

fn progress_of(dir: &std::path::Path, n: usize) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(dir.join(format!("progress-{n}.txt"))).ok()?;
    last_progress(&text, SPEC.topology)
}

/// Sends lines `range` (two words each from a vocabulary of `vocabulary`), counted in `oracle`.
fn feed(
    producer: &BaseProducer,
    range: std::ops::Range<usize>,
    vocabulary: usize,
    oracle: &mut BTreeMap<String, i64>,
) {
    send_lines(
        producer,
        range,
        |n| {
            vec![
                format!("w{}", n % vocabulary),
                format!("w{}", (n * 7 + 3) % vocabulary),
            ]
        },
        oracle,
    );
}

/// Reads the counts into `seen` (every count of every word, in order) until the last of each is
/// the oracle's, or two minutes pass.
fn read_counts(
    c: &BaseConsumer,
    seen: &mut BTreeMap<String, Vec<i64>>,
    oracle: &BTreeMap<String, i64>,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = |s: &BTreeMap<String, Vec<i64>>| {
        oracle
            .iter()
            .all(|(w, n)| s.get(w).and_then(|c| c.last()) == Some(n))
    };
    while Instant::now() < deadline && !done(seen) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
            let word = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let count = i64::from_be_bytes(m.payload().unwrap().try_into().unwrap());
            seen.entry(word).or_default().push(count);
        }
    }
}

fn topics(broker: &EmbeddedBroker) {
    broker.create_topic("text-lines", 4);
    broker.create_topic(SPEC.output, 4);
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

#[test]
fn a_scale_storm_under_load_loses_and_duplicates_nothing() {
    let broker = EmbeddedBroker::start_with(eddy_testkit::BrokerConfig {
        compaction_interval: Some(Duration::from_millis(200)),
        ..Default::default()
    })
    .unwrap();
    let bootstrap = broker.bootstrap();
    topics(&broker);
    let dir = tempfile::tempdir().unwrap();
    let mut workers: Vec<(usize, std::process::Child)> = (0..3)
        .map(|n| (n, standby_worker(&bootstrap, dir.path(), n)))
        .collect();
    let mut next = workers.len();
    let input = producer(&bootstrap);
    let mut oracle = BTreeMap::new();
    let mut rng = kill_rng();
    let mut storms = 0;
    for batch in 0..30 {
        feed(&input, batch * 60..(batch + 1) * 60, 400, &mut oracle);
        std::thread::sleep(Duration::from_millis(350));
        if batch % 5 == 4 {
            // One removed (SIGKILL, at a random point of the processing) and one added.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            let victim = rng.random_range(0..workers.len());
            let (_, mut gone) = workers.remove(victim);
            gone.kill().unwrap();
            gone.wait().unwrap();
            workers.push((next, standby_worker(&bootstrap, dir.path(), next)));
            next += 1;
            storms += 1;
        }
    }
    assert_eq!(storms, 6);
    let c = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == SPEC.output
    });
    let mut seen = BTreeMap::new();
    read_counts(&c, &mut seen, &oracle);
    // One more progress round (every 2 s) before the workers stop.
    std::thread::sleep(Duration::from_millis(2_500));
    for (_, w) in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert_exactly_once(&seen, &oracle);
    assert_eq!(
        replay_changelog(&bootstrap, SPEC),
        oracle,
        "the committed changelog of the count store replays to the oracle's totals"
    );
    let standby_records: u64 = (0..next)
        .filter_map(|n| progress_of(dir.path(), n))
        .map(|(standby, _)| standby)
        .sum();
    eprintln!("standby tasks wrote {standby_records} changelog records over {next} workers");
    assert!(standby_records > 0, "the standbys kept copies");
}

#[test]
fn a_killed_owners_tasks_resume_from_the_standbys_restoring_only_their_lag() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    topics(&broker);
    let dir = tempfile::tempdir().unwrap();
    let mut workers = vec![
        standby_worker(&bootstrap, dir.path(), 0),
        standby_worker(&bootstrap, dir.path(), 1),
    ];
    let input = producer(&bootstrap);
    let mut oracle = BTreeMap::new();
    feed(&input, 0..4000, 3000, &mut oracle);
    let c = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == SPEC.output
    });
    let mut seen = BTreeMap::new();
    read_counts(&c, &mut seen, &oracle);
    // Settled once two progress rounds show the same figures. The assignor may give either
    // worker every counting task: the survivor is the one that keeps standbys of the other's.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut before = [None, None];
    let (survivor, standby, restored_before) = loop {
        std::thread::sleep(Duration::from_millis(2_100));
        let now = [progress_of(dir.path(), 0), progress_of(dir.path(), 1)];
        let kept = (0..2)
            .filter_map(|n| now[n].map(|(standby, restored)| (n, standby, restored)))
            .filter(|(_, standby, _)| *standby > 0)
            .max_by_key(|(_, standby, _)| *standby);
        if let (Some(kept), true) = (kept, now == before) {
            break kept;
        }
        assert!(Instant::now() < deadline, "standbys never settled: {now:?}");
        before = now;
    };
    let mut owner = workers.remove(1 - survivor);
    owner.kill().unwrap();
    owner.wait().unwrap();
    // The survivor gets the dead owner's partitions after its session timeout (10 s).
    feed(&input, 4000..4100, 3000, &mut oracle);
    read_counts(&c, &mut seen, &oracle);
    std::thread::sleep(Duration::from_millis(2_500));
    for mut w in workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    assert_exactly_once(&seen, &oracle);
    let (_, restored_after) = progress_of(dir.path(), survivor).unwrap();
    let restored = restored_after - restored_before;
    let suffix = format!("-{}-changelog", SPEC.output);
    let in_changelog =
        eddy_testkit::count_records(&bootstrap, "read_committed", |t| t.ends_with(&suffix));
    eprintln!(
        "survivor: standbys wrote {standby}, the take-over restored {restored} of {in_changelog} changelog records"
    );
    assert!(in_changelog >= 3_000, "the changelog holds {in_changelog}");
    assert!(
        restored <= 100,
        "the take-over restored {restored} records: more than the standbys' lag"
    );
}
