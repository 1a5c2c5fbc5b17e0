//! `eddy run`'s exit: non-zero, with the error, when an application stops on its own (a thread
//! that failed on a record under `log_and_fail`); zero after SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// `eddy run word-count` against `broker`, its stdout lines sent on the returned channel.
fn run_word_count(
    broker: &EmbeddedBroker,
    state: &std::path::Path,
) -> (common::Killed, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", "word-count", "--plain", "--brokers"])
        .arg(broker.bootstrap())
        .args(["--http", "127.0.0.1:0", "--pg", "127.0.0.1:0"])
        .env("EDDY_STATE_DIR", state)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    (common::Killed(child), received)
}

/// Waits up to 60 s for the child to exit on its own.
fn exit_of(child: &mut common::Killed) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status, stderr);
        }
        assert!(Instant::now() < deadline, "eddy run did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn broker_with_word_count_topics() -> EmbeddedBroker {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("text-lines", 1);
    broker.create_topic("word-counts", 1);
    broker
}

#[test]
fn eddy_run_exits_non_zero_with_the_error_when_its_application_stops_on_its_own() {
    let broker = broker_with_word_count_topics();
    let state = tempfile::tempdir().unwrap();
    let (mut child, _lines) = run_word_count(&broker, state.path());
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    // Not UTF-8: the string deserializer fails, and the default handler is log_and_fail.
    p.send(
        BaseRecord::to("text-lines")
            .key("k")
            .payload(&[0xff, 0xfe, 0xfd][..]),
    )
    .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    let (status, stderr) = exit_of(&mut child);
    assert!(!status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains("word-count stopped") && stderr.contains("deserialize"),
        "the error is printed: {stderr}"
    );
}

#[test]
fn eddy_run_exits_zero_after_sigterm() {
    let broker = broker_with_word_count_topics();
    let state = tempfile::tempdir().unwrap();
    let (mut child, lines) = run_word_count(&broker, state.path());
    // Running: a progress line names the topology.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines
        .recv_timeout(Duration::from_secs(1))
        .is_ok_and(|l| l.contains("word-count") && l.contains("in"))
    {
        assert!(Instant::now() < deadline, "no progress line");
    }
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let (status, stderr) = exit_of(&mut child);
    assert!(status.success(), "{status:?}\n{stderr}");
}
