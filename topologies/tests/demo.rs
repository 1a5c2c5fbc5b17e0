//! `eddy demo` (the README's first command), for a few seconds: the embedded broker starts,
//! the generator feeds it, and every platform topology processes records.

use std::process::Command;

#[test]
fn the_demo_runs_every_platform_topology() {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["demo", "--seconds", "8", "--rate", "300"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("embedded Kafka-protocol broker at 127.0.0.1:"),
        "{stdout}"
    );
    let last_round: Vec<&str> = stdout
        .rsplit("-- ")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .collect();
    for name in eddy_topologies::platform::PLATFORM_TOPOLOGIES {
        let line = last_round
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no progress for {name}: {stdout}"));
        let records_in: u64 = line
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(records_in > 0, "{name} processed nothing: {line}");
        let lag: Option<u64> = line
            .split_whitespace()
            .skip_while(|w| *w != "lag")
            .nth(1)
            .and_then(|n| n.parse().ok());
        assert!(lag.is_some(), "{name} shows its input lag: {line}");
        assert!(line.contains("aborts   0"), "{line}");
    }
}
