"""The event log against the real broker: exact counts, dead letters, topic admin, kill -9.

Each test uses its own topics (unique names, registered with the codec) so
runs never see each other's records. Every wait is a condition with a deadline.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from framelog.schemas.codec import AvroCodec, default_codec
from framelog.schemas.events import new_event
from framelog.streams.admin import admin_client, create_topics, delete_topics
from framelog.streams.consumer import DecodedRecord, EventConsumer
from framelog.streams.producer import EventProducer
from framelog.streams.topics import TopicSpec, dead_letter_topic

pytestmark = pytest.mark.integration

DEADLINE = 90.0


def playback(video_id: str = "vid_it", **extra) -> dict:
    return new_event("PlaybackEvent", session_id="s-it", viewer_id="viewer-it", video_id=video_id, type="progress",
                     position_seconds=1.0, watch_time_delta_seconds=1.0, **extra)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE,
             step: Callable[[], None] | None = None) -> None:
    """Run ``step`` until ``condition`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        if step is not None:
            step()
        else:
            time.sleep(0.05)


@pytest.fixture()
def log_topic(stack, config):
    """A fresh PlaybackEvent topic with its DLQ, and a codec that knows them."""
    def make(partitions: int = 3) -> tuple[TopicSpec, AvroCodec]:
        name = f"it.log.{uuid.uuid4().hex[:10]}"
        spec = TopicSpec(name, ("PlaybackEvent",), partitions=partitions)
        dlq = TopicSpec(dead_letter_topic(name), ("DeadLetter",), partitions=1)
        create_topics(config.streams, [spec, dlq])
        created.extend([spec.name, dlq.name])
        codec = default_codec(config.streams)
        codec.register_topic(spec)
        codec.register_topic(dlq)
        return spec, codec

    created: list[str] = []
    yield make
    if created:
        delete_topics(config.kafka, config.stack, created)


def consume_all(consumer: EventConsumer, until: Callable[[list[DecodedRecord]], bool],
                timeout: float = DEADLINE) -> list[DecodedRecord]:
    got: list[DecodedRecord] = []
    wait_for(lambda: until(got), "records to arrive", timeout, step=lambda: got.extend(consumer.poll_batch(2000, 0.5)))
    return got


def drain_extra(consumer: EventConsumer, rounds: int = 3) -> list[DecodedRecord]:
    """What else arrives in a few more polls (used to prove there are no duplicates)."""
    extra: list[DecodedRecord] = []
    for _ in range(rounds):
        extra.extend(consumer.poll_batch(2000, 1.0))
    return extra


# ------------------------------------------------------------------ exact counts

def test_exact_counts_through_produce_and_consume(config, log_topic):
    spec, codec = log_topic(partitions=3)
    n = 10_000
    sent = set()
    with EventProducer(config.streams, codec) as producer:
        for i in range(n):
            event = playback(video_id=f"vid{i % 97}")
            sent.add(event["event_id"])
            producer.send(spec.name, "PlaybackEvent", event)
        producer.flush(60)
        assert producer.acked == n

    group = f"it-{uuid.uuid4().hex[:8]}"
    consumer = EventConsumer(config.streams, group, [spec.name], codec=codec)
    try:
        got = consume_all(consumer, lambda g: len(g) >= n)
        got += drain_extra(consumer)
        ids = Counter(r.value["event_id"] for r in got)
        assert len(got) == n and set(ids) == sent and max(ids.values()) == 1
        assert {r.name for r in got} == {"PlaybackEvent"}
        assert all(r.key == r.value["video_id"] for r in got)      # keyed by video id
        per_video = {}
        for r in got:                                             # one video, one partition
            assert per_video.setdefault(r.key, r.partition) == r.partition
        consumer.commit()
        assert sum(consumer.committed().values()) == n
    finally:
        consumer.close()

    again = EventConsumer(config.streams, group, [spec.name], codec=codec)   # committed: nothing is redelivered
    try:
        assert drain_extra(again) == []
    finally:
        again.close()


def test_commit_of_given_records_only(config, log_topic):
    spec, codec = log_topic(partitions=1)
    with EventProducer(config.streams, codec) as producer:
        for _ in range(10):
            producer.send(spec.name, "PlaybackEvent", playback())
    group = f"it-{uuid.uuid4().hex[:8]}"
    with EventConsumer(config.streams, group, [spec.name], codec=codec) as consumer:
        got = consume_all(consumer, lambda g: len(g) >= 10)
        consumer.commit(got[:4])                                   # only the first four landed
    with EventConsumer(config.streams, group, [spec.name], codec=codec) as consumer:
        rest = consume_all(consumer, lambda g: len(g) >= 6)
        assert [r.offset for r in rest] == [r.offset for r in got[4:]]


# ------------------------------------------------------------------ dead letters

def test_malformed_records_go_to_the_dlq_and_the_consumer_continues(config, log_topic):
    spec, codec = log_topic(partitions=1)
    lax = AvroCodec(config.topics, schema_registry_url=config.kafka.schema_registry_url, validate_on_encode=False)
    first, last = playback(), playback()
    bad_id = playback()
    bad_id["video_id"] = "no/slashes"
    good_bytes = codec.encode("PlaybackEvent", first)
    poison = [
        (b"garbage that is not avro", "bad_marker"),
        (good_bytes[:-4], "truncated"),
        (b"\xc3\x01" + b"\x00" * 8 + good_bytes[10:], "unknown_fingerprint"),
        (codec.encode("CacheWarm", new_event("CacheWarm", video_id="vid_it", paths=["/x"])), "record_not_allowed"),
        (lax.encode("PlaybackEvent", bad_id), "invalid_video_id"),
    ]
    with EventProducer(config.streams, codec) as producer:
        producer.send(spec.name, "PlaybackEvent", first)
        for value, _ in poison:
            producer.send_raw(spec.name, value, key="vid_it")
        producer.send(spec.name, "PlaybackEvent", last)

    with EventConsumer(config.streams, f"it-{uuid.uuid4().hex[:8]}", [spec.name], codec=codec) as consumer:
        got = consume_all(consumer, lambda g: len(g) >= 2)
        assert [r.value["event_id"] for r in got] == [first["event_id"], last["event_id"]]
        assert [r.offset for r in got] == [0, len(poison) + 1]
        assert consumer.dead_lettered == len(poison)
        consumer.commit()                                          # flushes the dead letters first
        assert sum(consumer.committed().values()) == len(poison) + 2

    with EventConsumer(config.streams, f"it-{uuid.uuid4().hex[:8]}", [spec.dlq], codec=codec) as dlq_reader:
        letters = consume_all(dlq_reader, lambda g: len(g) >= len(poison))
        letters += drain_extra(dlq_reader, rounds=1)
    assert len(letters) == len(poison)
    for letter, (value, reason), offset in zip(letters, poison, range(1, len(poison) + 1)):
        d = letter.value
        assert letter.name == "DeadLetter"
        assert (d["original_topic"], d["partition"], d["offset"]) == (spec.name, 0, offset)
        assert d["original_value"] == value and d["original_key"] == b"vid_it"
        assert d["reason"] == reason and reason in d["error"]
        assert letter.key == "vid_it"


# ------------------------------------------------------------------ topic admin

def test_create_topics_is_idempotent_and_updates(config, stack):
    name = f"it.admin.{uuid.uuid4().hex[:10]}"
    spec = TopicSpec(name, ("PlaybackEvent",), partitions=2, retention_ms=3_600_000)
    try:
        first = create_topics(config.streams, [spec])
        assert first.created == [name]
        second = create_topics(config.streams, [spec])
        assert second.created == [] and second.unchanged == [name] and not second.updated

        grown = TopicSpec(name, ("PlaybackEvent",), partitions=4, retention_ms=7_200_000)
        third = create_topics(config.streams, [grown])
        assert set(third.updated[name]) == {"retention.ms=7200000", "partitions 2->4"}
        md = admin_client(config.kafka, config.stack).list_topics(name, timeout=10)
        assert len(md.topics[name].partitions) == 4

        shrunk = TopicSpec(name, ("PlaybackEvent",), partitions=1, retention_ms=7_200_000)
        fourth = create_topics(config.streams, [shrunk])
        assert fourth.unchanged == [name] and "cannot remove partitions" in fourth.warnings[0]
    finally:
        delete_topics(config.kafka, config.stack, [name])


def test_registry_topics_are_created(config, stack):
    summary = create_topics(config.streams)
    from framelog.streams.topics import all_topics
    names = {s.name for s in all_topics(config.topics)}
    assert set(summary.created) | set(summary.unchanged) | set(summary.updated) == names
    assert create_topics(config.streams).unchanged and not create_topics(config.streams).created


# ------------------------------------------------------------------ broker crash

def test_kill9_mid_production_every_acknowledged_event_consumed_exactly_once(config, stack, log_topic):
    spec, codec = log_topic(partitions=3)
    acked: list[str] = []
    failed: list[str] = []
    sent: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()
    producer = EventProducer(config.streams, codec)

    def report(event_id: str):
        def on_delivery(err, msg):
            with lock:
                (failed if err is not None else acked).append(event_id)
        return on_delivery

    def produce() -> None:
        while not stop.is_set():
            for _ in range(100):
                event = playback(video_id=f"vid{len(sent) % 31}")
                sent.append(event["event_id"])
                producer.send(spec.name, "PlaybackEvent", event, on_delivery=report(event["event_id"]))
            producer.poll(0.05)                      # pacing: about 2 000 events/s

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(acked) >= 3000, "acknowledgements before the crash", 60)
        stack.kafka.kill9()
        assert not stack.kafka.is_running()
        at_crash = len(sent)
        stack.kafka.start()
        stack.kafka.wait_healthy(timeout=60)
        acked_before = len(acked)
        wait_for(lambda: len(acked) > acked_before and len(sent) > at_crash + 2000,
                 "production to resume after the restart", 90)
    finally:
        stop.set()
        thread.join(30)
    producer.flush(120)                               # raises if anything was not acknowledged

    assert not failed
    assert len(set(acked)) == len(acked) == len(sent)
    consumer = EventConsumer(config.streams, f"it-{uuid.uuid4().hex[:8]}", [spec.name], codec=codec)
    try:
        got = consume_all(consumer, lambda g: len(g) >= len(acked), timeout=120)
        got += drain_extra(consumer)
    finally:
        consumer.close()
    counts = Counter(r.value["event_id"] for r in got)
    assert set(counts) == set(acked)
    assert max(counts.values()) == 1, [e for e, c in counts.items() if c > 1][:5]


# ------------------------------------------------------------------ typed records through the one bridge

def test_typed_records_through_the_producer_and_the_async_bridge(config, log_topic):
    """emit/enqueue of a typed record (its own name, key = its video_id), an explicit partition, a batch
    awaited together, and a record the topic refuses raising at once, before anything is produced."""
    import asyncio

    from framelog.schemas.records import PlaybackEvent, StageTransition
    from framelog.streams.emitter import AsyncEmitter
    from framelog.streams.exceptions import TopicSchemaError

    spec, codec = log_topic(partitions=3)

    def event(video_id: str) -> PlaybackEvent:
        return PlaybackEvent(session_id="s-it", viewer_id="viewer-it", video_id=video_id, type="progress",
                             position_seconds=1.0, watch_time_delta_seconds=1.0)

    with EventProducer(config.streams, codec) as producer:
        first = producer.emit(spec.name, event("vid-a"))
        producer.enqueue(spec.name, event("vid-a"))
        producer.flush(30)
        pinned = producer.emit(spec.name, event("vid-b"), partition=2)
    assert pinned.partition == 2

    async def bridge() -> list:
        emitter = AsyncEmitter(config.streams, codec)
        try:
            one = await emitter.emit(spec.name, event("vid-a"))
            batch = await emitter.emit_all([(spec.name, event(f"vid-{i}")) for i in range(5)])
            with pytest.raises(TopicSchemaError):           # StageTransition does not belong on this topic
                await emitter.emit(spec.name, StageTransition(video_id="vid-a", job_id="j", stage="s",
                                                              state="queued"))
            return [one, *batch]
        finally:
            emitter.close()

    deliveries = asyncio.run(bridge())
    assert deliveries[0].partition == first.partition                # same key, same partition
    assert all(d.topic == spec.name and d.offset >= 0 for d in deliveries)

    consumer = EventConsumer(config.streams, f"it-{uuid.uuid4().hex[:8]}", [spec.name], codec=codec)
    try:
        got = consume_all(consumer, lambda g: len(g) >= 9)
        got += drain_extra(consumer, rounds=1)
    finally:
        consumer.close()
    assert len(got) == 9 and {r.name for r in got} == {"PlaybackEvent"}
    assert all(r.key == r.value["video_id"] for r in got)
    assert [r.partition for r in got if r.key == "vid-b"] == [2]
