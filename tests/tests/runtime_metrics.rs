//! `/metrics` of a running application, on the embedded broker: the client, thread, task,
//! transaction, restore, store and RocksDB families, with values that match what it did.

use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, RuntimeConfig, Serdes, StreamsBuilder,
    StreamsConfig, Topology,
};
use eddy_testkit::{free_port, http_get, metric_sum, EmbeddedBroker};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const APP: &str = "metrics-test";

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream(
        &["metric-scores"],
        Consumed::with(Serdes::string(), Serdes::json::<i64>()),
    )
    .group_by_key(Grouped::default())
    .aggregate(
        || 0i64,
        |_, s, t| t + s,
        Materialized::named("metric-totals"),
    )
    .to_stream()
    .to(
        "metric-totals-out",
        Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())),
    );
    b.build().unwrap()
}

fn start(broker: &EmbeddedBroker, dir: &std::path::Path) -> KafkaStreams {
    let mut c = StreamsConfig::new(APP);
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("deserialization.exception.handler", "log_and_continue")
        .unwrap();
    c.set("metrics.recording.level", "debug").unwrap();
    KafkaStreams::start(topology(), RuntimeConfig::new(c, broker.bootstrap())).unwrap()
}

/// Scrapes `addr` until `ready` holds of the text (or 30 s pass); returns the last text.
fn scrape_until(addr: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        if ready(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

#[test]
fn metrics_follow_what_the_application_did() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("metric-scores", 2);
    broker.create_topic("metric-totals-out", 2);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    let (mut sent, mut poison) = (0, 0);
    for i in 0..60 {
        let key = format!("u{}", i % 5);
        let value = if i % 10 == 3 {
            poison += 1;
            format!("{{not json {i}")
        } else {
            "2".to_string()
        };
        p.send(BaseRecord::to("metric-scores").key(&key).payload(&value))
            .unwrap();
        sent += 1;
    }
    p.flush(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let app = start(&broker, dir.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let http = app.queries().serve_http(addr.parse().unwrap()).unwrap();
    let app_label = [("application", APP)];
    let text = scrape_until(&addr, |t| {
        metric_sum(t, "eddy_thread_processed_records_total", &app_label) == Some(sent as f64)
            && metric_sum(t, "eddy_transactions_committed_total", &app_label)
                .is_some_and(|n| n > 0.0)
            && metric_sum(t, "eddy_consumer_lag_records", &app_label).is_some()
            && metric_sum(t, "eddy_dead_letter_records_total", &app_label) == Some(poison as f64)
    });
    // The client and its one thread.
    let running = [("application", APP), ("state", "running")];
    assert_eq!(value(&text, "eddy_client_state", &running), 1.0);
    assert_eq!(value(&text, "eddy_alive_stream_threads", &app_label), 1.0);
    assert_eq!(
        value(&text, "eddy_failed_stream_threads_total", &app_label),
        0.0
    );
    // What it processed, thread and tasks agreeing; the poison records dead-lettered by topic.
    assert_eq!(
        value(&text, "eddy_thread_processed_records_total", &app_label),
        sent as f64
    );
    assert_eq!(
        value(&text, "eddy_task_processed_records_total", &app_label),
        sent as f64
    );
    let scores = [("application", APP), ("topic", "metric-scores")];
    assert_eq!(
        value(&text, "eddy_dead_letter_records_total", &scores),
        poison as f64
    );
    assert_eq!(
        value(&text, "eddy_task_dropped_records_total", &app_label),
        poison as f64
    );
    // The loop's steps were timed; transactions committed, none aborted.
    for step in ["poll", "process", "punctuate", "commit"] {
        let count = value(
            &text,
            &format!("eddy_thread_{step}_seconds_count"),
            &app_label,
        );
        assert!(count > 0.0, "{step}: {count}");
    }
    assert!(value(&text, "eddy_transactions_committed_total", &app_label) > 0.0);
    assert_eq!(
        value(&text, "eddy_transactions_aborted_total", &app_label),
        0.0
    );
    // Every output's latency, every input's lateness (poison included: it is late or not before
    // it is read; debug level), every store put.
    let outputs = value(
        &text,
        "eddy_task_end_to_end_latency_seconds_count",
        &app_label,
    );
    assert!(outputs > 0.0, "{outputs}");
    assert_eq!(
        value(&text, "eddy_task_record_lateness_seconds_count", &app_label),
        sent as f64
    );
    let puts = metric_sum(
        &text,
        "eddy_store_operation_seconds_count",
        &[("store", "metric-totals"), ("op", "put")],
    )
    .unwrap_or(0.0);
    assert!(puts > 0.0, "store operations are timed at the debug level");
    // Lag per input partition, read at the scrape; the store's RocksDB figures.
    // The store's keys reach RocksDB when the caching layer flushes at a commit, which may come
    // after the lag reads zero: wait for both.
    let lag = scrape_until(&addr, |t| {
        metric_sum(t, "eddy_consumer_lag_records", &scores) == Some(0.0)
            && metric_sum(
                t,
                "eddy_rocksdb_estimated_keys",
                &[("application", APP), ("store", "metric-totals")],
            )
            .is_some_and(|keys| keys >= 5.0)
    });
    assert_eq!(value(&lag, "eddy_consumer_lag_records", &scores), 0.0);
    assert_eq!(value(&lag, "eddy_consumer_lag_seconds", &scores), 0.0);
    let keys = value(
        &lag,
        "eddy_rocksdb_estimated_keys",
        &[("application", APP), ("store", "metric-totals")],
    );
    assert!(keys >= 5.0, "five keys counted: {keys}");
    assert!(value(&lag, "eddy_rocksdb_block_cache_usage_bytes", &app_label) > 0.0);
    drop(http);
    app.close().unwrap();
    let closed = crate_state_text();
    assert_eq!(
        value(
            &closed,
            "eddy_client_state",
            &[("application", APP), ("state", "not_running")]
        ),
        1.0
    );
    assert_eq!(value(&closed, "eddy_alive_stream_threads", &app_label), 0.0);

    // A fresh state directory: the restart restores the store from its changelog.
    let restored_before =
        metric_sum(&closed, "eddy_task_restored_records_total", &app_label).unwrap_or(0.0);
    let restores_before = value(&closed, "eddy_restore_seconds_count", &app_label);
    let dir = tempfile::tempdir().unwrap();
    let app = start(&broker, dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = crate_state_text();
        let restores = metric_sum(&text, "eddy_restore_seconds_count", &app_label).unwrap_or(0.0);
        if restores >= restores_before + 2.0 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    app.close().unwrap();
    let restores = value(&text, "eddy_restore_seconds_count", &app_label) - restores_before;
    assert_eq!(restores, 2.0, "both tasks restored");
    let restored = value(&text, "eddy_task_restored_records_total", &app_label) - restored_before;
    assert!(restored >= 5.0, "every key's total read back: {restored}");
    assert_eq!(value(&text, "eddy_restoring_active_tasks", &app_label), 0.0);
    assert_eq!(
        value(&text, "eddy_restore_remaining_records", &app_label),
        0.0
    );
}

/// The process's metrics, without an endpoint.
fn crate_state_text() -> String {
    eddy_engine::render_metrics().unwrap()
}
