//! The embedded broker driven by kcat (installed by `.ci/run`): metadata listing, producing
//! keyed lines, and consuming them back.

use std::io::Write;
use std::process::{Command, Stdio};

use eddy_testkit::EmbeddedBroker;

fn kcat(args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed (bash .ci/run installs it)");
    if let Some(text) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kcat_lists_produces_and_consumes() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("kcat-topic", 2);
    let b = broker.bootstrap();
    let listing = kcat(&["-b", &b, "-L"], None);
    assert!(
        listing.contains("topic \"kcat-topic\" with 2 partitions"),
        "{listing}"
    );
    kcat(
        &["-b", &b, "-P", "-t", "kcat-topic", "-K", ":"],
        Some("a:1\nb:2\na:3\n"),
    );
    let consumed = kcat(
        &[
            "-b",
            &b,
            "-C",
            "-t",
            "kcat-topic",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%k=%s\n",
        ],
        None,
    );
    let mut lines: Vec<&str> = consumed.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["a=1", "a=3", "b=2"]);
}
