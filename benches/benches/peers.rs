//! Eddy's side of `benches/peers/run.sh`: issue 10's windowed count on a running broker, with
//! the tool's default commit interval. Prints the input records per second (first record to the
//! last), after checking what came out: under emit-on-close, closed windows that hold every
//! record but those of the last, still open second, each window once.
//!
//! `cargo bench -p eddy-benches --bench peers -- --bootstrap HOST:PORT --input T --output T
//!  --emit final|current --guarantee at-least-once|exactly-once --records N`

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy_benches::read_back::read_back;
use eddy_benches::windows::windowed_count;
use eddy_engine::{EmitStrategy, KafkaStreams, RuntimeConfig, StreamsConfig};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    // `cargo test --benches` runs this without arguments: nothing to measure then.
    let Some(bootstrap) = arg("--bootstrap") else {
        return;
    };
    let need = |name: &str| arg(name).unwrap_or_else(|| panic!("{name} is required"));
    let (input, output) = (need("--input"), need("--output"));
    let records: u64 = need("--records").parse().expect("--records is a number");
    let emit = match need("--emit").as_str() {
        "final" => EmitStrategy::OnWindowClose,
        "current" => EmitStrategy::OnWindowUpdate,
        other => panic!("--emit final|current, not {other}"),
    };
    let guarantee = match need("--guarantee").as_str() {
        "at-least-once" => "at_least_once",
        "exactly-once" => "exactly_once_v2",
        other => panic!("--guarantee at-least-once|exactly-once, not {other}"),
    };
    let app = format!("peers-{output}");
    let dir = std::env::temp_dir().join(format!("eddy-peers-{app}-{}", std::process::id()));
    let mut config = StreamsConfig::new(&app);
    config
        .set("processing.guarantee", guarantee)
        .expect("a known guarantee");
    config.state_dir = dir.clone();
    let streams = KafkaStreams::start(
        windowed_count(emit, &input, &output),
        RuntimeConfig::new(config, &bootstrap),
    )
    .expect("the topology starts");
    let progress = streams.progress();
    while progress.records_in.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    while progress.records_in.load(Ordering::Relaxed) < records {
        std::thread::sleep(Duration::from_millis(5));
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    streams.close().expect("a clean close");
    let _ = std::fs::remove_dir_all(dir);
    if emit == EmitStrategy::OnWindowClose {
        let out = read_back(&bootstrap, &output);
        let mut windows = BTreeSet::new();
        let mut total = 0i64;
        for (k, v) in &out {
            assert!(windows.insert(k.clone()), "a window was emitted twice");
            total += i64::from_be_bytes(v[..8].try_into().expect("an i64 count"));
        }
        assert!(
            total <= records as i64 && total >= records as i64 - 1_000,
            "closed windows hold {total} of {records} records"
        );
    }
    println!("{rate:.0}");
}
