"""`framelog dlq list|show|replay`: see what was dead-lettered, and put it back after a fix.

A dead letter keeps the original record byte for byte (streams/dead_letter.py).
Replaying sends those bytes, with their original key, back to the topic they
came from, so the consumer that refused them meets them again: after a fix it
accepts them; if it still refuses, they land in the dead-letter topic again.

Replay remembers how far it got: each dead-letter topic has its own replay
consumer group, and a batch's offsets are committed as soon as the broker has
acknowledged every record of it, so a second replay sends nothing already sent
and skips nothing. The one window is a replay killed between that
acknowledgement and the commit: the next replay sends that batch again, which
framelog's consumers absorb (stage jobs are keyed by job id and completion
markers, analytics by event_id). Kafka transactions would close the window but
leave a commit marker after every batch, which consumers that commit "last
record + 1" (Faust's) count as lag for ever. Re-sent records carry a
``framelog-replay-of`` header naming the dead letter they came from.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from framelog.core.config import StreamsConfig, TopicsConfig
from framelog.schemas.codec import AvroCodec, default_codec
from framelog.streams.consumer import consumer_config
from framelog.streams.dead_letter import DEAD_LETTER, DLQ_SUFFIX
from framelog.streams.exceptions import DecodeError, ValidationError
from framelog.streams.producer import producer_config
from framelog.streams.topics import all_topics, topic_spec

log = logging.getLogger(__name__)

REPLAY_HEADER = "framelog-replay-of"


def replay_group(dlq_topic: str) -> str:
    """The consumer group that remembers how far ``dlq_topic`` was replayed."""
    return f"framelog-dlq-replay.{dlq_topic}"


def dlq_topics(topics: TopicsConfig) -> list[str]:
    """The registry's dead-letter topics (``config.topics``)."""
    return [t.name for t in all_topics(topics) if t.name.endswith(DLQ_SUFFIX)]


def _check_dlq(topics: TopicsConfig, dlq_topic: str) -> None:
    topic_spec(dlq_topic, topics)          # unknown topic: KeyError naming it
    if not dlq_topic.endswith(DLQ_SUFFIX):
        raise KeyError(f"{dlq_topic!r} is not a dead-letter topic (they end in {DLQ_SUFFIX})")


@dataclass(frozen=True)
class DlqSummary:
    topic: str
    records: int       # records on the topic now (end - start, summed over partitions)
    replayed: int      # of those, already replayed (the replay group's committed offsets)

    @property
    def pending(self) -> int:
        return max(self.records - self.replayed, 0)


def summarize(streams: StreamsConfig, *, timeout: float = 10.0) -> list[DlqSummary]:
    """Every dead-letter topic with its record count and how much of it was replayed (``config.streams``)."""
    out = []
    for topic in dlq_topics(streams.topics):
        consumer = Consumer(consumer_config(streams.kafka, streams.stack, replay_group(topic)))
        try:
            partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
            tps = [TopicPartition(topic, p) for p in partitions]
            records = replayed = 0
            for tp in consumer.committed(tps, timeout=timeout):
                low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
                records += high - low
                replayed += max(tp.offset - low, 0) if tp.offset >= 0 else 0
            out.append(DlqSummary(topic, records, replayed))
        finally:
            consumer.close()
    return out


@dataclass
class ReplayReport:
    topic: str
    replayed: dict[str, int] = field(default_factory=dict)    # original topic -> records sent back
    skipped: list[str] = field(default_factory=list)           # why a dead letter could not be replayed

    @property
    def total(self) -> int:
        return sum(self.replayed.values())


def _target(topics: TopicsConfig, codec: AvroCodec, dlq_topic: str,
            value: bytes | None) -> tuple[str, bytes, bytes | None]:
    """(original topic, original bytes, original key) of one dead letter; ValueError when it cannot go back."""
    try:
        name, letter = codec.decode_for_topic(dlq_topic, value or b"")
    except (DecodeError, ValidationError) as exc:
        raise ValueError(f"not a readable DeadLetter: {exc}") from None
    if name != DEAD_LETTER:
        raise ValueError(f"a {name}, not a DeadLetter")
    original = letter["original_topic"]
    if original.endswith(DLQ_SUFFIX) or original not in {t.name for t in all_topics(topics)}:
        raise ValueError(f"original topic {original!r} is not one of framelog's data topics")
    if not letter["original_value"]:
        raise ValueError("the dead letter kept no original bytes")
    return original, letter["original_value"], letter.get("original_key")


def _raise_on_failure(err, msg) -> None:
    if err is not None:
        raise KafkaException(err)


def replay(streams: StreamsConfig, dlq_topic: str, *, batch_size: int = 500, timeout: float = 30.0,
           codec: AvroCodec | None = None) -> ReplayReport:
    """Send every dead letter of ``dlq_topic`` not yet replayed back to its original topic (see module doc).

    Stops once it has reached the end offsets the topic had when it started. ``streams``: ``config.streams``.
    """
    _check_dlq(streams.topics, dlq_topic)
    codec = codec or default_codec(streams)
    report = ReplayReport(dlq_topic)
    group = replay_group(dlq_topic)
    consumer = Consumer(consumer_config(streams.kafka, streams.stack, group))
    producer = Producer(producer_config(streams.kafka, streams.stack,
                                        **{"client.id": group, "message.timeout.ms": int(timeout * 1000)}))
    try:
        partitions = consumer.list_topics(dlq_topic, timeout=timeout).topics[dlq_topic].partitions
        tps = [TopicPartition(dlq_topic, p) for p in partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)[1] for tp in tps}
        # start where the last replay committed (the beginning for a first replay); assign, not subscribe:
        # one replay at a time per topic, and no rebalance to wait for
        starts = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=timeout)}
        consumer.assign([TopicPartition(dlq_topic, p, starts[p] if starts[p] >= 0 else -2) for p in partitions])
        position = {p: max(starts[p], 0) for p in partitions}
        deadline = time.monotonic() + timeout
        while any(position[p] < ends[p] for p in partitions):
            msgs = [m for m in consumer.consume(batch_size, timeout=1.0) if m.error() is None]
            if not msgs:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replay of {dlq_topic} made no progress for {timeout:g}s")
                position.update({tp.partition: tp.offset for tp in consumer.position(consumer.assignment())
                                 if tp.offset >= 0})
                continue
            deadline = time.monotonic() + timeout
            sent: dict[str, int] = {}
            for m in msgs:
                if m.offset() >= ends[m.partition()]:
                    continue                  # written after this replay started: the next replay's
                position[m.partition()] = m.offset() + 1
                try:
                    original, value, key = _target(streams.topics, codec, dlq_topic, m.value())
                except ValueError as exc:
                    report.skipped.append(f"{dlq_topic}[{m.partition()}]@{m.offset()}: {exc}")
                    continue
                producer.produce(original, value=value, key=key,
                                 headers=[(REPLAY_HEADER, f"{dlq_topic}/{m.partition()}/{m.offset()}".encode())],
                                 on_delivery=_raise_on_failure)
                sent[original] = sent.get(original, 0) + 1
            if producer.flush(timeout) > 0:
                raise TimeoutError(f"the broker did not acknowledge the replayed records within {timeout:g}s")
            consumer.commit(offsets=[TopicPartition(dlq_topic, p, position[p]) for p in partitions],
                            asynchronous=False)
            for t, n in sent.items():
                report.replayed[t] = report.replayed.get(t, 0) + n
    finally:
        consumer.close()
    log.info("replayed %d dead letters of %s (%d skipped)", report.total, dlq_topic, len(report.skipped))
    return report
