//! Incremental rebalancing: with `cooperative-sticky` (a topology whose sub-topologies each read
//! one topic) only the tasks whose partitions move close; with static membership
//! (`group.instance.id`) an instance restarted within its session timeout moves nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, KafkaStreams, Produced, RuntimeConfig, Serdes, StreamsBuilder, StreamsConfig,
    StreamsState, Topology,
};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn passthrough(input: &str, output: &str) -> Topology {
    let b = StreamsBuilder::new();
    b.stream(&[input], Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(|v: String| v)
        .to(output, Produced::with(Serdes::string(), Serdes::string()));
    b.build().unwrap()
}

fn start(
    topology: Topology,
    broker: &EmbeddedBroker,
    app: &str,
    dir: &std::path::Path,
    settings: &[(&str, &str)],
    rebalances: Option<Arc<AtomicUsize>>,
) -> KafkaStreams {
    let mut c = StreamsConfig::new(app);
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    for (k, v) in settings {
        c.set(k, v).unwrap();
    }
    let mut runtime = RuntimeConfig::new(c, broker.bootstrap());
    if let Some(counter) = rebalances {
        runtime = runtime.with_state_listener(move |new, _| {
            if new == StreamsState::Rebalancing {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    KafkaStreams::start(topology, runtime).unwrap()
}

fn assigned(app: &KafkaStreams) -> u64 {
    app.progress().assigned_partitions.load(Ordering::SeqCst)
}

fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(45);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `n` records with distinct keys; returns the keys.
fn send(broker: &EmbeddedBroker, topic: &str, prefix: &str, n: usize) -> Vec<String> {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for k in &keys {
        p.send(BaseRecord::to(topic).key(k).payload("v")).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    keys
}

/// The keys in `topic` (read_committed), read until nothing comes for 3 s.
fn keys_in(broker: &EmbeddedBroker, topic: &str, group: &str) -> Vec<String> {
    let c: BaseConsumer =
        consumer_from_beginning(&broker.bootstrap(), group, "read_committed", |t| t == topic);
    let mut keys = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            keys.push(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned());
            last = Instant::now();
        }
    }
    keys.sort();
    keys
}

#[test]
fn cooperative_rebalancing_closes_only_the_tasks_that_move() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("coop-in", 4);
    broker.create_topic("coop-out", 4);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(
        passthrough("coop-in", "coop-out"),
        &broker,
        "coop",
        dir_a.path(),
        &[],
        None,
    );
    wait_until("a holding every partition", || {
        assigned(&a) == 4 && a.restoring_tasks() == 0
    });
    let mut sent = send(&broker, "coop-in", "before-", 40);
    let b = start(
        passthrough("coop-in", "coop-out"),
        &broker,
        "coop",
        dir_b.path(),
        &[],
        None,
    );
    wait_until("the partitions shared", || {
        assigned(&a) == 2 && assigned(&b) == 2
    });
    let closed = a.progress().tasks_closed.load(Ordering::SeqCst);
    assert_eq!(
        closed, 2,
        "the first instance closes the two tasks that moved, not all four"
    );
    sent.extend(send(&broker, "coop-in", "after-", 40));
    sent.sort();
    wait_until("every record processed", || {
        a.progress().records_in.load(Ordering::SeqCst)
            + b.progress().records_in.load(Ordering::SeqCst)
            >= 80
    });
    a.close().unwrap();
    b.close().unwrap();
    assert_eq!(
        keys_in(&broker, "coop-out", "coop-check"),
        sent,
        "every record once"
    );
}

#[test]
fn a_static_member_restarted_within_its_session_timeout_moves_nothing() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("static-in", 2);
    broker.create_topic("static-out", 2);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let settings = [("group.instance.id", "auto")];
    let rebalances_a = Arc::new(AtomicUsize::new(0));
    let a = start(
        passthrough("static-in", "static-out"),
        &broker,
        "static",
        dir_a.path(),
        &settings,
        Some(Arc::clone(&rebalances_a)),
    );
    wait_until("a running", || {
        assigned(&a) == 2 && a.restoring_tasks() == 0
    });
    // The second instance, on the same state directory each time.
    let start_b = || {
        start(
            passthrough("static-in", "static-out"),
            &broker,
            "static",
            dir_b.path(),
            &settings,
            None,
        )
    };
    let b = start_b();
    wait_until("the partitions shared", || {
        assigned(&a) == 1 && assigned(&b) == 1
    });
    let mut sent = send(&broker, "static-in", "before-", 20);
    wait_until("the first records processed", || {
        a.progress().records_in.load(Ordering::SeqCst)
            + b.progress().records_in.load(Ordering::SeqCst)
            >= 20
    });
    let (rebalances, closed) = (
        rebalances_a.load(Ordering::SeqCst),
        a.progress().tasks_closed.load(Ordering::SeqCst),
    );

    let a_before = a.progress().records_in.load(Ordering::SeqCst);
    // The second instance stops and comes back on its state directory, well within 10 s.
    b.close().unwrap();
    let b = start_b();
    wait_until("b back with its partition", || {
        assigned(&b) == 1 && b.restoring_tasks() == 0
    });
    sent.extend(send(&broker, "static-in", "after-", 20));
    sent.sort();
    wait_until("the later records processed", || {
        let a_after = a.progress().records_in.load(Ordering::SeqCst) - a_before;
        a_after + b.progress().records_in.load(Ordering::SeqCst) >= 20
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rebalances_a.load(Ordering::SeqCst),
        rebalances,
        "the instance that stayed saw no rebalance"
    );
    assert_eq!(
        a.progress().tasks_closed.load(Ordering::SeqCst),
        closed,
        "and closed no task"
    );
    assert_eq!(assigned(&a), 1);
    a.close().unwrap();
    b.close().unwrap();
    assert_eq!(
        keys_in(&broker, "static-out", "static-check"),
        sent,
        "every record once"
    );
}

#[test]
fn a_static_member_fenced_by_a_newer_one_with_its_id_stops() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("fence-in", 1);
    broker.create_topic("fence-out", 1);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two processes given the same id by mistake: the newer one takes the member over.
    let settings = [("group.instance.id", "same-id")];
    let a = start(
        passthrough("fence-in", "fence-out"),
        &broker,
        "fence",
        dir_a.path(),
        &settings,
        None,
    );
    wait_until("a running", || {
        assigned(&a) == 1 && a.restoring_tasks() == 0
    });
    let b = start(
        passthrough("fence-in", "fence-out"),
        &broker,
        "fence",
        dir_b.path(),
        &settings,
        None,
    );
    wait_until("the older instance stopped on the fencing", || {
        a.state() == StreamsState::Error
    });
    assert!(
        a.failure().unwrap().contains("main consumer"),
        "{:?}",
        a.failure()
    );
    wait_until("the newer one holding the partition", || assigned(&b) == 1);
    let _ = a.close();
    b.close().unwrap();
}
