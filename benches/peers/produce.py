"""Writes issue 10's workload to a topic of 3 partitions: 10 000 keys, ~100-byte JSON values,
event time 1 ms apart (the same records as eddy_benches::windows::record)."""
import argparse
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--records", type=int, required=True)
    a = p.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for f in admin.create_topics([NewTopic(a.topic, 3, 1)]).values():
        f.result()
    producer = Producer(
        {
            "bootstrap.servers": a.bootstrap,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    base = int(time.time() * 1000) - a.records
    for i in range(a.records):
        key = f"user-{i % 10_000}"
        value = (
            f'{{"user":"{key}","event":"quiz_answered","seq":{i:>10},'
            f'"score":{i % 101:>3},"pad":"xxxxxxxxxx"}}'
        )
        while True:
            try:
                producer.produce(a.topic, key=key, value=value, timestamp=base + i)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)


if __name__ == "__main__":
    main()
