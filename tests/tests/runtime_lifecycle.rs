//! The application's lifecycle on the embedded broker: the state listener, the uncaught-error
//! handler's three answers, and the production exception handler.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, KafkaStreams, Produced, RuntimeConfig, Serdes, StreamThreadExceptionResponse,
    StreamsBuilder, StreamsConfig, StreamsState, Topology, DLQ_TOPIC,
};
use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;

static READS: AtomicUsize = AtomicUsize::new(0);

fn send(broker: &EmbeddedBroker, topic: &str, records: &[(&str, &str)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for (k, v) in records {
        p.send(BaseRecord::to(topic).key(*k).payload(*v)).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// The committed records of `topic` (key, value's length, header `error`), read until `want`
/// of them or `patience` passes.
fn read(
    broker: &EmbeddedBroker,
    topic: &str,
    want: usize,
    patience: Duration,
) -> Vec<(String, usize, Option<String>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        // A group of its own each time, committing nothing: every read is from the start.
        .set(
            "group.id",
            format!("check-{topic}-{}", READS.fetch_add(1, Ordering::SeqCst)),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + patience;
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let error = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "error")
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            });
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().map_or(0, <[u8]>::len),
                error,
            ));
        }
    }
    out
}

/// [`read`], patient enough for what is due.
fn committed(
    broker: &EmbeddedBroker,
    topic: &str,
    want: usize,
) -> Vec<(String, usize, Option<String>)> {
    read(broker, topic, want, Duration::from_secs(30))
}

/// What `topic` holds once nothing more is due (a duplicate, an output that must not exist).
fn all_of(broker: &EmbeddedBroker, topic: &str) -> Vec<(String, usize, Option<String>)> {
    read(broker, topic, usize::MAX, Duration::from_secs(3))
}

fn config(app: &str, dir: &std::path::Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(app);
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c
}

fn wait_for(app: &KafkaStreams, state: StreamsState, within: Duration) {
    let deadline = Instant::now() + within;
    while app.state() != state {
        assert!(
            Instant::now() < deadline,
            "still {:?}, not {state:?} (failure: {:?})",
            app.state(),
            app.failure()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `input` → `f` → `output`, strings.
fn mapping(
    input: &str,
    output: &str,
    f: impl Fn(String) -> String + Send + Sync + 'static,
) -> Topology {
    let b = StreamsBuilder::new();
    b.stream(&[input], Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(f)
        .to(output, Produced::with(Serdes::string(), Serdes::string()));
    b.build().unwrap()
}

#[test]
fn the_state_listener_is_told_every_change_through_close() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("life-in", 1);
    broker.create_topic("life-out", 1);
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let runtime = {
        let seen = Arc::clone(&seen);
        RuntimeConfig::new(config("life-listener", dir.path()), broker.bootstrap())
            .with_state_listener(move |new, old| seen.lock().unwrap().push((old, new)))
    };
    let app = KafkaStreams::start(mapping("life-in", "life-out", |v| v), runtime).unwrap();
    wait_for(&app, StreamsState::Running, Duration::from_secs(10));
    send(&broker, "life-in", &[("a", "1")]);
    assert_eq!(committed(&broker, "life-out", 1).len(), 1);
    app.close().unwrap();
    let seen = seen.lock().unwrap().clone();
    use StreamsState::*;
    assert_eq!(seen.first(), Some(&(Created, Running)), "{seen:?}");
    assert_eq!(
        &seen[seen.len() - 2..],
        &[(Running, PendingShutdown), (PendingShutdown, NotRunning)],
        "{seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].1 == w[1].0),
        "each change starts where the last ended: {seen:?}"
    );
}

#[test]
fn a_failing_thread_shuts_the_client_down_by_default() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("fail-in", 1);
    broker.create_topic("fail-out", 1);
    let dir = tempfile::tempdir().unwrap();
    let b = StreamsBuilder::new();
    b.stream(
        &["fail-in"],
        Consumed::with(Serdes::string(), Serdes::json::<i64>()),
    )
    .to(
        "fail-out",
        Produced::with(Serdes::string(), Serdes::json::<i64>()),
    );
    let app = KafkaStreams::start(
        b.build().unwrap(),
        RuntimeConfig::new(config("life-fail", dir.path()), broker.bootstrap()),
    )
    .unwrap();
    send(&broker, "fail-in", &[("a", "1"), ("b", "{not json")]);
    wait_for(&app, StreamsState::Error, Duration::from_secs(30));
    let failure = app.failure().expect("the error is kept");
    assert!(failure.contains("deserialize"), "{failure}");
    assert!(app.close().is_err(), "close returns the thread's error");
}

#[test]
fn a_replaced_thread_resumes_its_tasks_and_every_record_comes_out_once() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("replace-in", 2);
    broker.create_topic("replace-out", 2);
    let dir = tempfile::tempdir().unwrap();
    let panicked = Arc::new(AtomicBool::new(false));
    let handled = Arc::new(AtomicUsize::new(0));
    let topology = {
        let panicked = Arc::clone(&panicked);
        mapping("replace-in", "replace-out", move |v| {
            // The first time only: the replacement processes it again and succeeds.
            if v == "v10" && !panicked.swap(true, Ordering::SeqCst) {
                panic!("user code failed on {v}");
            }
            v
        })
    };
    let runtime = {
        let handled = Arc::clone(&handled);
        RuntimeConfig::new(config("life-replace", dir.path()), broker.bootstrap())
            .with_uncaught_exception_handler(move |e| {
                assert!(e.to_string().contains("panicked"), "{e}");
                handled.fetch_add(1, Ordering::SeqCst);
                StreamThreadExceptionResponse::ReplaceThread
            })
    };
    let app = KafkaStreams::start(topology, runtime).unwrap();
    let records: Vec<(String, String)> = (0..20)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    send(&broker, "replace-in", &refs);
    assert_eq!(committed(&broker, "replace-out", 20).len(), 20);
    // Then all of it: a duplicate would show.
    let mut out: Vec<String> = all_of(&broker, "replace-out")
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    out.sort();
    let mut keys: Vec<String> = records.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    assert_eq!(out, keys, "every record once");
    assert!(panicked.load(Ordering::SeqCst));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert!(app.state().is_running_or_rebalancing(), "{:?}", app.state());
    assert_eq!(app.failure(), None);
    app.close().unwrap();
}

#[test]
fn shutdown_application_stops_every_instance() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("app-in", 2);
    broker.create_topic("app-out", 2);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path| {
        KafkaStreams::start(
            mapping("app-in", "app-out", |v| {
                assert_ne!(v, "poison", "user code refuses the poison");
                v
            }),
            RuntimeConfig::new(config("life-app", dir), broker.bootstrap())
                .with_uncaught_exception_handler(|_| {
                    StreamThreadExceptionResponse::ShutdownApplication
                }),
        )
        .unwrap()
    };
    let (a, b) = (start(dir_a.path()), start(dir_b.path()));
    wait_for(&a, StreamsState::Running, Duration::from_secs(20));
    wait_for(&b, StreamsState::Running, Duration::from_secs(20));
    // Every key, so that both partitions, whoever owns them, get one.
    let poison: Vec<(String, &str)> = (0..8).map(|i| (format!("p{i}"), "poison")).collect();
    let refs: Vec<(&str, &str)> = poison.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    send(&broker, "app-in", &refs);
    wait_for(&a, StreamsState::Error, Duration::from_secs(30));
    wait_for(&b, StreamsState::Error, Duration::from_secs(30));
    for app in [&a, &b] {
        assert!(app.failure().is_some());
    }
    let (fa, fb) = (a.failure().unwrap(), b.failure().unwrap());
    assert!(
        fa.contains("shut down by instance") || fb.contains("shut down by instance"),
        "one of them stopped on the other's request: {fa} / {fb}"
    );
    let _ = a.close();
    let _ = b.close();
    assert!(all_of(&broker, "app-out").is_empty(), "no poison output");
}

/// `big` becomes a 2 MB value, beyond librdkafka's `message.max.bytes` (1 000 000).
fn amplifying() -> Topology {
    mapping("prod-in", "prod-out", |v| {
        if v == "big" {
            "x".repeat(2_000_000)
        } else {
            v
        }
    })
}

#[test]
fn an_output_the_producer_refuses_is_dead_lettered_or_stops_the_task() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("prod-in", 1);
    broker.create_topic("prod-out", 1);
    send(
        &broker,
        "prod-in",
        &[("a", "small"), ("b", "big"), ("c", "small")],
    );

    let dir = tempfile::tempdir().unwrap();
    let mut continuing = config("life-produce-continue", dir.path());
    continuing
        .set("production.exception.handler", "log_and_continue")
        .unwrap();
    let app = KafkaStreams::start(
        amplifying(),
        RuntimeConfig::new(continuing, broker.bootstrap()),
    )
    .unwrap();
    let out = committed(&broker, "prod-out", 2);
    let keys: Vec<&str> = out.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "c"], "the others go on");
    let dead = committed(&broker, DLQ_TOPIC, 1);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (key, value_len, error) = &dead[0];
    assert_eq!((key.as_str(), *value_len), ("b", 0));
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .contains("refuses the output to `prod-out`"),
        "{error:?}"
    );
    assert!(app.state().is_running_or_rebalancing());
    app.close().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let app = KafkaStreams::start(
        amplifying(),
        RuntimeConfig::new(config("life-produce-fail", dir.path()), broker.bootstrap()),
    )
    .unwrap();
    wait_for(&app, StreamsState::Error, Duration::from_secs(30));
    let failure = app.failure().unwrap();
    assert!(failure.contains("log_and_fail"), "{failure}");
    let _ = app.close();
    assert_eq!(
        all_of(&broker, "prod-out").len(),
        2,
        "the failing application committed nothing (the first one's two)"
    );
}

/// `big` becomes a 10 kB value: within librdkafka's `message.max.bytes`, so the producer sends
/// it, but beyond the output topic's `max.message.bytes` (4 000), so the broker refuses its
/// batch — with every other record that shares the batch.
fn amplifying_beyond_the_topic() -> Topology {
    mapping("refused-in", "refused-out", |v| {
        if v == "big" {
            "x".repeat(10_000)
        } else {
            v
        }
    })
}

/// An output the broker refuses after the send (its delivery report says so) goes to the
/// production exception handler as a refusal by the producer does: dead-lettered under
/// `log_and_continue`, where every other output of its transaction comes out once; a stopped
/// thread under `log_and_fail`. Neither aborts and redoes the transaction for ever.
#[test]
fn an_output_the_broker_refuses_is_dead_lettered_or_stops_the_task() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("refused-in", 1);
    broker.create_topic_with_configs("refused-out", 1, &[("max.message.bytes", "4000")]);
    let lines: Vec<(String, String)> = (0..40)
        .map(|i| {
            let value = if i == 17 {
                "big".into()
            } else {
                format!("v{i}")
            };
            (format!("k{i:02}"), value)
        })
        .collect();
    let records: Vec<(&str, &str)> = lines
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    send(&broker, "refused-in", &records);
    let expected: Vec<String> = (0..40)
        .filter(|i| *i != 17)
        .map(|i| format!("k{i:02}"))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let mut continuing = config("life-refused-continue", dir.path());
    continuing
        .set("production.exception.handler", "log_and_continue")
        .unwrap();
    let app = KafkaStreams::start(
        amplifying_beyond_the_topic(),
        RuntimeConfig::new(continuing, broker.bootstrap()),
    )
    .unwrap();
    let dead = committed(&broker, DLQ_TOPIC, 1);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (key, value_len, error) = &dead[0];
    assert_eq!((key.as_str(), *value_len), ("k17", 0));
    let error = error.as_deref().unwrap_or_default();
    assert!(
        error.contains("broker refuses the output to `refused-out`")
            && error.to_lowercase().contains("too large"),
        "{error}"
    );
    send(&broker, "refused-in", &[("k40", "after")]);
    let mut expected_after = expected.clone();
    expected_after.push("k40".into());
    let out = committed(&broker, "refused-out", expected_after.len());
    let keys: Vec<&str> = out.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, expected_after, "every other output once, in order");
    assert!(
        app.state().is_running_or_rebalancing(),
        "{:?}",
        app.failure()
    );
    app.close().unwrap();
    assert_eq!(
        all_of(&broker, "refused-out").len(),
        expected_after.len(),
        "no duplicate"
    );
    assert_eq!(all_of(&broker, DLQ_TOPIC).len(), 1, "one dead letter");

    let dir = tempfile::tempdir().unwrap();
    let app = KafkaStreams::start(
        amplifying_beyond_the_topic(),
        RuntimeConfig::new(config("life-refused-fail", dir.path()), broker.bootstrap()),
    )
    .unwrap();
    wait_for(&app, StreamsState::Error, Duration::from_secs(60));
    let failure = app.failure().unwrap();
    assert!(
        failure.contains("log_and_fail") && failure.contains("refused-out"),
        "{failure}"
    );
    let _ = app.close();
    assert_eq!(
        all_of(&broker, "refused-out").len(),
        expected_after.len(),
        "the failing application committed nothing"
    );
}

/// A sink the broker refuses every write to for lack of authorization (an ACL removed): no
/// production exception handler may skip it and redoing it never passes, so the thread stops
/// with an error naming the topic — as Kafka Streams treats an authorization error as fatal —
/// rather than aborting and redoing its transaction for ever. Nothing is committed.
#[test]
fn a_sink_the_broker_refuses_to_authorize_stops_the_thread() {
    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("unauthorized-in", 1);
    broker.create_topic("unauthorized-out", 1);
    send(&broker, "unauthorized-in", &[("k1", "a"), ("k2", "b")]);
    broker.reject_produce_to("unauthorized-out", TOPIC_AUTHORIZATION_FAILED, u32::MAX);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("life-unauthorized", dir.path());
    // Not even log_and_continue skips it: the record is not at fault, the topic is.
    c.set("production.exception.handler", "log_and_continue")
        .unwrap();
    let app = KafkaStreams::start(
        mapping("unauthorized-in", "unauthorized-out", |v| v),
        RuntimeConfig::new(c, broker.bootstrap()),
    )
    .unwrap();
    wait_for(&app, StreamsState::Error, Duration::from_secs(60));
    let failure = app.failure().unwrap();
    assert!(
        failure.contains("unauthorized-out") && failure.to_lowercase().contains("authoriz"),
        "{failure}"
    );
    let _ = app.close();
    broker.clear_faults();
    assert!(
        all_of(&broker, "unauthorized-out").is_empty(),
        "nothing committed"
    );
    assert!(
        all_of(&broker, DLQ_TOPIC).is_empty(),
        "nothing dead-lettered"
    );
}
