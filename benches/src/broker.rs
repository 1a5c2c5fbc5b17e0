//! The embedded broker through one rdkafka client each way: a producer writing 100-byte records
//! to 3 partitions (acks all, batches of up to 10 000), then one consumer reading them all back.
//! Each figure counts only when every record is acknowledged, and read back once.

use std::time::{Duration, Instant};

use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

use crate::report::Row;

/// Produces then consumes `records` records; returns the two rows.
pub fn run(records: u64) -> Result<Vec<Row>, String> {
    let broker = EmbeddedBroker::start().map_err(|e| e.to_string())?;
    let bootstrap = broker.bootstrap();
    broker.create_topic("bench-broker", 3);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| e.to_string())?;
    let payload = vec![b'x'; 100];
    let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
    let started = Instant::now();
    for i in 0..records {
        let key = &keys[(i % 1000) as usize];
        while producer
            .send(BaseRecord::to("bench-broker").key(key).payload(&payload))
            .is_err()
        {
            producer.poll(Duration::from_millis(1));
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| e.to_string())?;
    let produce_time = started.elapsed();
    let mut written = 0;
    for p in 0..3 {
        written += broker
            .partition_state("bench-broker", p)
            .map(|(high_watermark, _, _)| high_watermark)
            .unwrap_or(0);
    }
    if written != records as i64 {
        return Err(format!("the broker holds {written} of {records} records"));
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "bench-broker")
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("bench-broker", p, rdkafka::Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut seen = 0;
    while seen < records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => return Err(e.to_string()),
            None if started.elapsed() > Duration::from_secs(300) => {
                return Err(format!("read {seen} of {records} records in 300 s"));
            }
            None => {}
        }
    }
    let consume_time = started.elapsed();
    Ok(vec![
        Row::new(
            "embedded broker",
            "one rdkafka producer, 100-byte records",
            records,
            produce_time,
        )
        .noted("target ≥ 1 000 000/s"),
        Row::new(
            "embedded broker",
            "one rdkafka consumer, 100-byte records",
            records,
            consume_time,
        )
        .noted("target ≥ 1 000 000/s"),
    ])
}
