//! The progress counters of a running application: input lag rises with a backlog and falls
//! back to zero once the backlog is read.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy_engine::{
    Consumed, KafkaStreams, Produced, RuntimeConfig, Serdes, StreamsBuilder, StreamsConfig,
};
use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const RECORDS: u64 = 4_000;

#[test]
fn input_lag_shows_the_backlog_and_returns_to_zero() {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    broker.create_topic("slow-in", 1);
    broker.create_topic("slow-out", 1);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let key = format!("k{i}");
        while p
            .send(BaseRecord::to("slow-in").key(&key).payload("v"))
            .is_err()
        {
            p.poll(Duration::from_millis(1));
        }
    }
    p.flush(Duration::from_secs(10)).unwrap();

    // A topology that takes a millisecond per record: the backlog lasts seconds, long enough
    // for several of the once-a-second lag reports.
    let b = StreamsBuilder::new();
    b.stream(
        &["slow-in"],
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .map_values(|v| {
        std::thread::sleep(Duration::from_millis(1));
        v
    })
    .to(
        "slow-out",
        Produced::with(Serdes::string(), Serdes::string()),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new("lagging");
    config
        .set("state.dir", dir.path().to_str().unwrap())
        .unwrap();
    let app =
        KafkaStreams::start(b.build().unwrap(), RuntimeConfig::new(config, bootstrap)).unwrap();
    let progress = app.progress();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut most = 0;
    while progress.records_in.load(Ordering::Relaxed) < RECORDS {
        assert!(Instant::now() < deadline, "the backlog was never read");
        most = most.max(progress.lag.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(20));
    }
    let caught_up = Instant::now() + Duration::from_secs(10);
    while progress.lag.load(Ordering::Relaxed) > 0 && Instant::now() < caught_up {
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = progress.lag.load(Ordering::Relaxed);
    app.close().unwrap();
    assert!(
        most >= RECORDS / 4,
        "the backlog showed as lag: at most {most} of {RECORDS}"
    );
    assert_eq!(last, 0, "no lag once everything was read");
    assert_eq!(
        progress.lag.load(Ordering::Relaxed),
        0,
        "a closed app has no lag"
    );
}
