"""Benchmark: playback events through the real broker, framelog's codec vs a bare loop.

Both sides produce N PlaybackEvents to a fresh topic and consume them back
with decoding, in the same run on the same broker:

* baseline: confluent-kafka Producer/Consumer + fastavro schemaless read/write
  with a pre-parsed schema (the least a Python Kafka+Avro service can do);
* framelog: EventProducer (idempotent, acks=all, validation, single-object
  encoding with fingerprint) and EventConsumer (decode, validate, dead-letter).

Machines here are shared and noisy, so the figure that matters is the ratio.
Writes bench/results/log.json and bench/results/log.md.

    python bench/bench_log.py --events 1000000
"""
from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import fastavro
from confluent_kafka import Consumer, Producer

from framelog.core.config import get_config
from framelog.schemas import raw_schema
from framelog.schemas.codec import MILLIS, AvroCodec
from framelog.streams.admin import create_topics
from framelog.streams.consumer import EventConsumer, consumer_config
from framelog.streams.producer import EventProducer, producer_config
from framelog.streams.topics import TopicSpec

RESULTS = Path(__file__).resolve().parent / "results"


def sample_events(n: int) -> list[dict]:
    now = int(time.time() * 1000)
    videos = [uuid.uuid4().hex for _ in range(500)]
    types = ["view_start", "progress", "progress", "progress", "pause", "seek", "ended", "like"]
    return [{
        "event_id": str(uuid.uuid4()), "schema_version": 1, "event_time": now + i,
        "session_id": f"s{i % 20000}", "viewer_id": f"v{i % 50000}", "video_id": videos[i % len(videos)],
        "type": types[i % len(types)], "position_seconds": float(i % 600), "watch_time_delta_seconds": 5.0,
        "rendition": "720p", "country": "US", "device": "web", "client_time": now + i, "ingest_time": now + i,
    } for i in range(n)]


def bench_baseline(config, topic: str, events: list[dict]) -> tuple[float, float]:
    schema = fastavro.parse_schema(raw_schema("PlaybackEvent"))
    producer = Producer(producer_config(config.kafka, config.stack))
    t0 = time.perf_counter()
    for e in events:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, e)
        while True:
            try:
                producer.produce(topic, buf.getvalue(), e["video_id"].encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    produce_s = time.perf_counter() - t0

    consumer = Consumer(consumer_config(config.kafka, config.stack, f"bench-bare-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topic])
    got = 0
    t0 = None
    deadline = time.monotonic() + 300
    while got < len(events) and time.monotonic() < deadline:
        for msg in consumer.consume(10000, 1.0):
            if msg.error():
                continue
            if t0 is None:
                t0 = time.perf_counter()
            fastavro.schemaless_reader(io.BytesIO(msg.value()), schema)
            got += 1
    consume_s = time.perf_counter() - (t0 or time.perf_counter())
    consumer.close()
    assert got == len(events), f"baseline consumed {got} of {len(events)}"
    return produce_s, consume_s


def bench_framelog(config, spec: TopicSpec, events: list[dict]) -> tuple[float, float]:
    codec = AvroCodec(schema_registry_url=config.kafka.schema_registry_url, topic_specs=[spec, TopicSpec(spec.dlq, ("DeadLetter",))], timestamps=MILLIS)
    producer = EventProducer(config.streams, codec)
    t0 = time.perf_counter()
    for e in events:
        producer.send(spec.name, "PlaybackEvent", e, key=e["video_id"])
    producer.flush(120)
    produce_s = time.perf_counter() - t0

    consumer = EventConsumer(config.streams, f"bench-framelog-{uuid.uuid4().hex[:6]}", [spec.name], codec=codec)
    got = 0
    t0 = None
    deadline = time.monotonic() + 300
    while got < len(events) and time.monotonic() < deadline:
        batch = consumer.poll_batch(10000, 1.0)
        if batch and t0 is None:
            t0 = time.perf_counter()
        got += len(batch)
    consume_s = time.perf_counter() - (t0 or time.perf_counter())
    consumer.close()
    assert got == len(events), f"framelog consumed {got} of {len(events)}"
    return produce_s, consume_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    config = get_config()
    run = uuid.uuid4().hex[:6]
    base = TopicSpec(f"bench.bare-{run}", ("PlaybackEvent",), partitions=6, retention_ms=3_600_000)
    ours = TopicSpec(f"bench.framelog-{run}", ("PlaybackEvent",), partitions=6, retention_ms=3_600_000)
    create_topics(config.streams, [base, ours])
    events = sample_events(args.events)

    b_prod, b_cons = bench_baseline(config, base.name, events)
    f_prod, f_cons = bench_framelog(config, ours, events)
    n = len(events)
    result = {
        "events": n, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "baseline": {"produce_eps": n / b_prod, "consume_decode_eps": n / b_cons},
        "framelog": {"produce_eps": n / f_prod, "consume_decode_eps": n / f_cons},
    }
    result["ratio"] = {"produce": result["framelog"]["produce_eps"] / result["baseline"]["produce_eps"],
                       "consume_decode": result["framelog"]["consume_decode_eps"] / result["baseline"]["consume_decode_eps"]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "log.json").write_text(json.dumps(result, indent=2))
    md = [
        "# Event log benchmark", "",
        f"{n:,} PlaybackEvents through the local Kafka broker, measured {result['measured_at']} "
        "(`python bench/bench_log.py --events %d`)." % n, "",
        "| path | produce events/s | consume+decode events/s |", "|---|---:|---:|",
        f"| bare confluent-kafka + fastavro | {result['baseline']['produce_eps']:,.0f} | {result['baseline']['consume_decode_eps']:,.0f} |",
        f"| framelog codec (validation, single-object encoding, DLQ) | {result['framelog']['produce_eps']:,.0f} | {result['framelog']['consume_decode_eps']:,.0f} |",
        f"| ratio framelog / bare | {result['ratio']['produce']:.2f} | {result['ratio']['consume_decode']:.2f} |", "",
    ]
    (RESULTS / "log.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
