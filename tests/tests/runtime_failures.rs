//! What a stream thread does when something fails for good: a record that fails processing
//! under `log_and_fail` stops the thread without committing any of its effects (its tasks close
//! dirty and the transaction aborts), on every restart; a producer that becomes unusable
//! mid-transaction is replaced before anything is restored, so its own dead transaction does not
//! hold the restore.

use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, EngineError, KafkaStreams, Processor, ProcessorContext, Produced, Record,
    RuntimeConfig, Serdes, StreamsBuilder, StreamsConfig, Topology,
};
use eddy_testkit::{consumer_from_beginning, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

const TXN_OFFSET_COMMIT: i16 = 28;
const INVALID_PRODUCER_EPOCH: i16 = 47;

/// Forwards every record, then fails on `poison`: the record's output is already forwarded
/// when the error comes.
struct ForwardThenFail;

impl Processor<String, String, String, String> for ForwardThenFail {
    fn process(
        &mut self,
        record: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> eddy_engine::Result<()> {
        let poison = record.value == "poison";
        ctx.forward(record)?;
        if poison {
            return Err(EngineError::processing(
                "forward-then-fail",
                "poison record",
            ));
        }
        Ok(())
    }
}

fn echo() -> Topology {
    let b = StreamsBuilder::new();
    b.stream(
        &["lines"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .process_values(|| ForwardThenFail, &[])
    .to("echo", Produced::with(Serdes::string(), Serdes::string()));
    b.build().unwrap()
}

fn send(bootstrap: &str, topic: &str, values: &[&str]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for v in values {
        p.send(BaseRecord::to(topic).key("k").payload(*v)).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Every value on `topic` that read_committed shows, read for `wait`.
fn committed_values(bootstrap: &str, topic: &'static str, wait: Duration) -> Vec<String> {
    let reader: BaseConsumer =
        consumer_from_beginning(bootstrap, "verifier", "read_committed", move |t| t == topic);
    let mut values = Vec::new();
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    values
}

/// Waits until the application's thread stops on its own.
fn wait_stopped(app: &KafkaStreams, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while app.is_running() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    !app.is_running()
}

#[test]
fn a_fatal_processing_error_commits_none_of_the_failing_records_effects() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("lines", 1);
    broker.create_topic("echo", 1);
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let mut c = StreamsConfig::new("fail-fast");
        c.set("state.dir", dir.path().to_str().unwrap()).unwrap();
        c.set("processing.exception.handler", "log_and_fail")
            .unwrap();
        c.set("commit.interval.ms", "100").unwrap();
        let app = KafkaStreams::start(echo(), RuntimeConfig::new(c, &bootstrap)).unwrap();
        assert!(
            wait_stopped(&app, Duration::from_secs(60)),
            "the poison record stops the thread"
        );
        let err = app.close().unwrap_err();
        assert!(err.to_string().contains("poison record"), "{err}");
    };
    send(&bootstrap, "lines", &["a", "b", "poison"]);
    run();
    let after_first = committed_values(&bootstrap, "echo", Duration::from_secs(3));
    // A restart on the same state directory meets the same record and fails the same way.
    run();
    let after_restart = committed_values(&bootstrap, "echo", Duration::from_secs(3));
    for values in [&after_first, &after_restart] {
        assert!(
            !values.iter().any(|v| v == "poison"),
            "the failing record's output became visible: {values:?}"
        );
        for v in ["a", "b"] {
            assert!(
                values.iter().filter(|x| *x == v).count() <= 1,
                "`{v}` committed twice: {values:?}"
            );
        }
    }
    // Nothing past the poison record is committed as consumed.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "fail-fast")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("lines", 0);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let offset = committed.elements()[0].offset().to_raw().unwrap_or(-1);
    assert!(
        offset <= 2,
        "offset {offset} committed past the poison record"
    );
}

/// The broker answers the thread's TxnOffsetCommit with INVALID_PRODUCER_EPOCH once (fatal to
/// librdkafka) while the transaction holds a changelog write; the transaction stays open on the
/// broker for `transaction.timeout.ms` (2 minutes here). The thread must make its new producer —
/// whose `init_transactions` aborts the dead transaction — before restoring the tasks, so the
/// count goes on within seconds, not after the timeout.
#[test]
fn a_broken_producer_is_replaced_before_the_restore_that_its_transaction_would_hold() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("text-lines", 1);
    broker.create_topic("word-counts", 1);
    let dir = tempfile::tempdir().unwrap();
    let mut c = StreamsConfig::new("replace-producer");
    c.set("state.dir", dir.path().to_str().unwrap()).unwrap();
    c.set("commit.interval.ms", "100").unwrap();
    c.set("transaction.timeout.ms", "120000").unwrap();
    let app = KafkaStreams::start(
        eddy_topologies::word_count().unwrap(),
        RuntimeConfig::new(c, &bootstrap),
    )
    .unwrap();
    let counts = consumer_from_beginning(&bootstrap, "verifier", "read_committed", |t| {
        t == "word-counts"
    });
    let next_count = |wait: Duration| -> Option<i64> {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if let Some(Ok(m)) = counts.poll(Duration::from_millis(50)) {
                return Some(i64::from_be_bytes(m.payload()?.try_into().ok()?));
            }
        }
        None
    };
    send(&bootstrap, "text-lines", &["alpha"]);
    assert_eq!(next_count(Duration::from_secs(30)), Some(1));
    broker.fail_requests(TXN_OFFSET_COMMIT, INVALID_PRODUCER_EPOCH, Some(1));
    send(&bootstrap, "text-lines", &["alpha"]);
    let second = next_count(Duration::from_secs(40));
    let aborts = app
        .progress()
        .aborts
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(app.is_running(), "the thread goes on with a new producer");
    app.close().unwrap();
    assert_eq!(
        second,
        Some(2),
        "the count goes on from the restored 1 within seconds"
    );
    assert!(aborts >= 1, "the refused commit was aborted");
}

/// A task reopened after an abort starts from the stream time of the last commit, even without
/// local checkpoints (in-memory stores): a record that was late before the abort is still late
/// when it is processed again.
#[test]
fn a_record_late_before_an_abort_is_late_after_it() {
    const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("clicks", 1);
    broker.create_topic("click-counts", 1);
    let b = StreamsBuilder::new();
    b.stream(
        &["clicks"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .group_by_key(eddy_engine::Grouped::named("by-key").with(Serdes::string(), Serdes::string()))
    .windowed_by(eddy_engine::TimeWindows::of_size_with_no_grace(
        Duration::from_secs(1),
    ))
    // A long retention: only grace (stream time), not the store, decides what is late.
    .count(
        eddy_engine::Materialized::named("clicks-per-second")
            .in_memory()
            .with_retention(Duration::from_secs(3600)),
    )
    .to_stream()
    .to(
        "click-counts",
        Produced::with(
            Serdes::windowed(Serdes::string()),
            Serdes::nullable(Serdes::i64()),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = StreamsConfig::new("late-after-abort");
    c.set("state.dir", dir.path().to_str().unwrap()).unwrap();
    c.set("commit.interval.ms", "100").unwrap();
    let app = KafkaStreams::start(b.build().unwrap(), RuntimeConfig::new(c, &bootstrap)).unwrap();
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let send_at = |key: &str, ts: i64| {
        p.send(BaseRecord::to("clicks").key(key).payload("x").timestamp(ts))
            .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
    };
    let commits = || {
        app.progress()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    send_at("early", 10_000);
    let until = Instant::now() + Duration::from_secs(30);
    while committed_values(&bootstrap, "click-counts", Duration::from_millis(200)).is_empty()
        && Instant::now() < until
    {}
    // The next offset commit is refused: the transaction holding `late` (dropped as late, at
    // stream time 10 000) aborts and the task reopens and processes it again.
    let aborts = || {
        app.progress()
            .aborts
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    broker.fail_requests(TXN_OFFSET_COMMIT, GROUP_AUTHORIZATION_FAILED, Some(1));
    send_at("late", 2_000);
    let until = Instant::now() + Duration::from_secs(30);
    while aborts() == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after_abort = commits();
    let until = Instant::now() + Duration::from_secs(30);
    while commits() < after_abort + 3 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let keys: Vec<Vec<u8>> = {
        let reader: BaseConsumer =
            consumer_from_beginning(&bootstrap, "keys", "read_committed", |t| {
                t == "click-counts"
            });
        let mut keys = Vec::new();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
                keys.push(m.key().unwrap_or_default().to_vec());
            }
        }
        keys
    };
    let aborted = aborts();
    app.close().unwrap();
    assert!(aborted >= 1, "the refused offset commit aborted");
    assert!(
        !keys.iter().any(|k| k.starts_with(b"late")),
        "a record that was late before the abort was counted after it: {keys:?}"
    );
    assert!(keys.iter().any(|k| k.starts_with(b"early")));
}
