"""The stall watchdog on the real broker (issue 14 pt 2): a member that owns a partition with records waiting and
never commits is found stalled within its limit, and a member that commits as it reads is not.

The member here is a plain consumer that joins a group, takes its partitions and stops advancing one of them,
which is what the broker saw of ``framelog-popularity`` after a broker kill -9 (in the group, heartbeating,
never reading ``playback.events[4]`` again): the watchdog judges only what the broker and the assignment say.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from framelog.pipeline.stall_watch import StallWatchdog
from framelog.stack.process import wait_until
from framelog.streams.admin import create_topics
from framelog.streams.kafka_auth import client_settings
from framelog.streams.producer import EventProducer
from framelog.streams.topics import TopicSpec

pytestmark = pytest.mark.integration

LIMIT = 6.0
PARTITIONS = 2


@pytest.fixture()
def topic(stack, config) -> str:
    spec = TopicSpec(f"test.stall-{uuid.uuid4().hex[:8]}", ("PlaybackEvent",), partitions=PARTITIONS,
                     retention_ms=3_600_000)
    create_topics(config.streams, [spec])
    return spec.name


def _member(config, group: str, topic: str, partitions: int = PARTITIONS) -> Consumer:
    """A group member holding every partition of ``topic`` (assigned once the first poll returns)."""
    consumer = Consumer({**client_settings(config.kafka, config.stack), "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 10_000})
    consumer.subscribe([topic])
    assert wait_until(lambda: consumer.poll(0.2) is not None or len(consumer.assignment()) == partitions, 60)
    return consumer


def _produce(config, topic: str, per_partition: int) -> None:
    producer = EventProducer(config.streams)
    for p in range(PARTITIONS):
        for i in range(per_partition):
            producer.send_raw(topic, f"record {i}".encode(), key=f"k{i}", partition=p)
    producer.flush()


def _owned(consumer: Consumer, lock: threading.Lock):
    def owned() -> set[tuple[str, int]]:
        with lock:
            return {(tp.topic, tp.partition) for tp in consumer.assignment()}
    return owned


def test_a_member_that_holds_a_partition_behind_without_committing_is_found_stalled(config, topic):
    group = f"it-stall-{uuid.uuid4().hex[:8]}"
    _produce(config, topic, 5)
    lock = threading.Lock()
    member = _member(config, group, topic)
    stalled: list[list[tuple[str, int]]] = []
    watchdog = StallWatchdog(config.kafka, config.stack, group, _owned(member, lock), {topic}, LIMIT,
                             stalled.append)
    t0 = time.monotonic()
    watchdog.start()
    try:        # librdkafka heartbeats from its own thread: the member stays in the group, reading nothing more
        assert wait_until(lambda: bool(stalled), LIMIT * 4), "the stalled member was never found"
        took = time.monotonic() - t0
        assert sorted(stalled[0]) == [(topic, p) for p in range(PARTITIONS)]
        assert LIMIT <= took <= LIMIT * 3, took
    finally:
        watchdog.stop(10)
        member.close()


def test_a_member_that_commits_what_it_reads_is_never_stalled(config, topic):
    group = f"it-stall-{uuid.uuid4().hex[:8]}"
    lock = threading.Lock()
    member = _member(config, group, topic)
    stalled: list[list[tuple[str, int]]] = []
    watchdog = StallWatchdog(config.kafka, config.stack, group, _owned(member, lock), {topic}, LIMIT,
                             stalled.append).start()
    stop = threading.Event()

    def produce_slowly() -> None:     # records keep arriving for longer than the limit
        while not stop.wait(0.5):
            _produce(config, topic, 1)

    threading.Thread(target=produce_slowly, daemon=True).start()
    deadline = time.monotonic() + LIMIT * 3
    try:
        while time.monotonic() < deadline:       # the member's own loop: read, commit
            with lock:
                msg = member.poll(0.2)
                if msg is not None and msg.error() is None:
                    member.commit(msg, asynchronous=False)
        assert stalled == []
    finally:
        stop.set()
        watchdog.stop(10)
        member.close()


def test_partitions_of_its_topics_that_nobody_in_a_settled_group_owns_are_found_stalled(config, topic, stack):
    """What a worker that joined while the restarted broker still reported its topic missing saw: assigned
    nothing, the group STABLE, every partition of the topic behind and nobody's."""
    group = f"it-stall-{uuid.uuid4().hex[:8]}"
    _produce(config, topic, 3)
    first = _member(config, group, topic)         # commits once, then leaves: the group has offsets on the topic
    for p in range(PARTITIONS):
        first.commit(offsets=[TopicPartition(topic, p, 1)], asynchronous=False)
    first.close()
    other = TopicSpec(f"test.stall-other-{uuid.uuid4().hex[:8]}", ("PlaybackEvent",), partitions=1,
                      retention_ms=3_600_000)
    create_topics(config.streams, [other])
    lock = threading.Lock()
    member = _member(config, group, other.name, partitions=1)     # in the group, owning none of ``topic``
    stalled: list[list[tuple[str, int]]] = []
    watchdog = StallWatchdog(config.kafka, config.stack, group, _owned(member, lock), {topic, other.name}, LIMIT,
                             stalled.append).start()
    try:
        assert wait_until(lambda: bool(stalled), LIMIT * 4), "the unowned partitions were never judged"
        assert sorted(stalled[0]) == [(topic, p) for p in range(PARTITIONS)]
    finally:
        watchdog.stop(10)
        member.close()
