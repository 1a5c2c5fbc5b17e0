//! The embedded broker through rdkafka: produce and consume records/s of 100-byte records.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eddy_testkit::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

const RECORDS: usize = 50_000;

fn produce(p: &BaseProducer, topic: &str, payload: &[u8]) {
    for i in 0..RECORDS {
        let key = format!("k{}", i % 1000);
        loop {
            match p.send(BaseRecord::to(topic).key(&key).payload(payload)) {
                Ok(()) => break,
                Err((_, _)) => {
                    p.poll(Duration::from_millis(1));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

fn broker(c: &mut Criterion) {
    let broker = EmbeddedBroker::start().unwrap();
    let bootstrap = broker.bootstrap();
    let payload = vec![b'x'; 100];
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut group = c.benchmark_group("embedded_broker");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    let mut round = 0;
    group.bench_function("produce_100b", |b| {
        b.iter(|| {
            round += 1;
            let topic = format!("bench-produce-{round}");
            broker.create_topic(&topic, 3);
            produce(&producer, &topic, &payload);
        })
    });
    broker.create_topic("bench-consume", 3);
    produce(&producer, "bench-consume", &payload);
    group.bench_function("consume_100b", |b| {
        b.iter(|| {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "bench")
                .set("fetch.wait.max.ms", "10")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in 0..3 {
                tpl.add_partition_offset("bench-consume", p, rdkafka::Offset::Beginning)
                    .unwrap();
            }
            consumer.assign(&tpl).unwrap();
            let mut seen = 0;
            while seen < RECORDS {
                if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                    m.unwrap();
                    seen += 1;
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, broker);
criterion_main!(benches);
