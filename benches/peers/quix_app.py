"""Quix Streams on issue 10's workload: a count per key in 1-second tumbling windows with no
grace, `.final()` (emit on close) or `.current()` (emit on update), at-least-once or
exactly-once. Prints the input records per second, from the first record to the last."""
import argparse
import tempfile
import time

from quixstreams import Application


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--emit", choices=["final", "current"], required=True)
    p.add_argument("--guarantee", choices=["at-least-once", "exactly-once"], required=True)
    p.add_argument("--records", type=int, required=True)
    a = p.parse_args()
    app = Application(
        broker_address=a.bootstrap,
        consumer_group=f"quix-{a.emit}-{a.guarantee}-{int(time.time())}",
        auto_offset_reset="earliest",
        processing_guarantee=a.guarantee,
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),
    )
    source = app.topic(a.input, key_deserializer="str", value_deserializer="json")
    sink = app.topic(a.output, key_serializer="str", value_serializer="json")
    seen = {"n": 0, "first": None, "last": None}

    def count(_value):
        if seen["first"] is None:
            seen["first"] = time.monotonic()
        seen["n"] += 1
        if seen["n"] >= a.records:
            seen["last"] = time.monotonic()
            app.stop()

    sdf = app.dataframe(source)
    sdf = sdf.update(count)
    windows = sdf.tumbling_window(duration_ms=1000, grace_ms=0).count()
    sdf = windows.final() if a.emit == "final" else windows.current()
    sdf.to_topic(sink)
    app.run()
    if seen["last"] is None:
        raise SystemExit(f"quix read {seen['n']} of {a.records} records")
    print(f"{a.records / (seen['last'] - seen['first']):.0f}")


if __name__ == "__main__":
    main()
