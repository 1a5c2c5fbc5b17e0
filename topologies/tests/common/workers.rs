//! Worker processes (`eddy run`) for the tests that kill, pause and add them, and the checks of
//! a word count they share: its input lines and the replay of its count store's changelog.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eddy_testkit::consumer_from_beginning;
use rand::SeedableRng;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

/// Which topology a kill test runs.
#[derive(Clone, Copy)]
pub struct Counting {
    pub topology: &'static str,
    pub output: &'static str,
    /// Counts per 1-second window of the record timestamp, keyed `<word>@<window start>`.
    pub windowed: bool,
}

/// Worker `n` on its own state directory under `dir`.
pub fn worker(topology: &str, bootstrap: &str, dir: &std::path::Path, n: usize) -> Child {
    worker_with_output(topology, bootstrap, dir, n, Stdio::null(), "")
}

/// A worker whose progress lines (records in and out, commits, aborts, standby and restored
/// records) go to `stdout`, with `extra_config` lines added to its properties.
pub fn worker_with_output(
    topology: &str,
    bootstrap: &str,
    dir: &std::path::Path,
    n: usize,
    stdout: Stdio,
    extra_config: &str,
) -> Child {
    let config = dir.join(format!("worker-{n}.properties"));
    let state = dir.join(format!("state-{n}"));
    let mut f = std::fs::File::create(&config).unwrap();
    writeln!(f, "processing.guarantee=exactly_once_v2\ncommit.interval.ms=100\ntransaction.timeout.ms=3000\nstate.dir={}\n{extra_config}", state.display()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", topology, "--brokers", bootstrap, "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(stdout)
        // `EDDY_TEST_WORKER_LOGS=1` shows the workers' warnings, to follow a failing run.
        .stderr(if std::env::var_os("EDDY_TEST_WORKER_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap()
}

/// Where the kills fall: drawn from `EDDY_KILL_SEED` (printed, to replay a run) or the clock.
pub fn kill_rng() -> rand::rngs::StdRng {
    let seed = std::env::var("EDDY_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill points from EDDY_KILL_SEED={seed}");
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Line `n` of the input: two of `words`.
pub fn line<'a>(words: &[&'a str], n: usize) -> Vec<&'a str> {
    (0..2)
        .map(|j| words[(n * 3 + j * 5) % words.len()])
        .collect()
}

/// The count store's changelog (`*-<output>-changelog`), read_committed from the beginning,
/// replayed: the newest count per key (window keys decoded to `<word>@<start>`).
pub fn replay_changelog(bootstrap: &str, spec: Counting) -> BTreeMap<String, i64> {
    let suffix = format!("-{}-changelog", spec.output);
    let c = consumer_from_beginning(bootstrap, "changelog-verifier", "read_committed", |t| {
        t.ends_with(&suffix)
    });
    assert!(
        !c.assignment().unwrap().elements().is_empty(),
        "the count store has a changelog"
    );
    let mut replayed = BTreeMap::new();
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            idle = Instant::now();
            let raw = m.key().unwrap_or_default();
            let word = if spec.windowed {
                window_key(raw)
            } else {
                String::from_utf8_lossy(raw).to_string()
            };
            match m.payload() {
                Some(b) => {
                    let count = i64::from_be_bytes(b.try_into().expect("an 8-byte count"));
                    replayed.insert(word, count);
                }
                None => {
                    replayed.remove(&word);
                }
            }
        }
    }
    replayed
}

/// `<word>@<start>` of a window store's changelog key: `[segment:8][key length:4][key][start:8]
/// [sequence:8]`, timestamps big-endian with the sign bit flipped.
fn window_key(raw: &[u8]) -> String {
    let len = u32::from_be_bytes(raw[8..12].try_into().unwrap()) as usize;
    let word = String::from_utf8_lossy(&raw[12..12 + len]);
    let start = u64::from_be_bytes(raw[12 + len..20 + len].try_into().unwrap()) ^ (1 << 63);
    format!("{word}@{}", start as i64)
}

/// Sends line `n` (its words from `words_of`) for every `n` of `lines` to `text-lines`, keyed
/// `l<n>`, counting its words in `oracle`.
pub fn send_lines(
    producer: &rdkafka::producer::BaseProducer,
    lines: std::ops::Range<usize>,
    words_of: impl Fn(usize) -> Vec<String>,
    oracle: &mut BTreeMap<String, i64>,
) {
    use rdkafka::producer::Producer;
    for n in lines {
        let words = words_of(n);
        for w in &words {
            *oracle.entry(w.clone()).or_default() += 1;
        }
        producer
            .send(
                rdkafka::producer::BaseRecord::to("text-lines")
                    .key(&format!("l{n}"))
                    .payload(&words.join(" ")),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// The last (standby, restored) figures of `topology` in a worker's progress lines.
pub fn last_progress(progress: &str, topology: &str) -> Option<(u64, u64)> {
    progress
        .lines()
        .filter(|l| l.starts_with(topology))
        .filter_map(|l| {
            let standby = l.split("standby").nth(1)?.split_whitespace().next()?;
            let restored = l.split("restored").nth(1)?.trim();
            Some((standby.parse().ok()?, restored.parse().ok()?))
        })
        .next_back()
}

/// No duplicate, no gap: every word's counts strictly grow and end at the oracle's total.
pub fn assert_exactly_once(seen: &BTreeMap<String, Vec<i64>>, oracle: &BTreeMap<String, i64>) {
    for (word, total) in oracle {
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
