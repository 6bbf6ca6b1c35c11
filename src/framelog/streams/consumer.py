"""The event consumer: decoded batches, dead-lettering, and commits only on request.

Auto-commit is off: an offset is committed only when the caller says its work
landed (at-least-once; sinks make it exactly-once with idempotent writes).
``read_committed`` hides records of aborted transactions. A record that cannot
be decoded or validated goes to ``<topic>.dlq`` and is skipped, so one bad
record never stalls a partition; the dead letter is acknowledged before any
commit that moves past it. Tombstones (null values) are skipped.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, TopicPartition

from framelog.core.config import KafkaConfig, StackConfig, StreamsConfig
from framelog.schemas.codec import AvroCodec, default_codec
from framelog.streams.dead_letter import DeadLetterWriter
from framelog.streams.exceptions import CommitError, DecodeError, ValidationError
from framelog.streams.kafka_auth import client_settings
from framelog.streams.producer import EventProducer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    topic: str
    partition: int
    offset: int
    key: str | None
    name: str                    # Avro record name, e.g. "PlaybackEvent"
    value: dict[str, Any]
    timestamp: int               # Kafka record timestamp, epoch milliseconds (-1 if none)


def consumer_config(kafka: KafkaConfig, stack: StackConfig, group_id: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings of a consumer in ``group_id`` (``config.kafka, config.stack``)."""
    conf: dict[str, Any] = {
        **client_settings(kafka, stack),
        "client.id": f"{kafka.client_id}-{group_id}",
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 65536,
    }
    conf.update(overrides)
    return conf


Offsets = Mapping[tuple[str, int], int] | Iterable[DecodedRecord] | Sequence[TopicPartition] | None


class EventConsumer:
    """Consumes framelog topics as DecodedRecords; dead-letters what it cannot decode."""

    def __init__(self, streams: StreamsConfig, group_id: str, topics: Sequence[str], *, codec: AvroCodec | None = None,
                 dead_letters: DeadLetterWriter | None = None, validate: bool = True,
                 on_revoke: Callable[[list[tuple[str, int]]], None] | None = None, **overrides: Any):
        """``on_revoke``: called with the partitions being taken away, while they are still
        ours (a sink finishes and commits its writes in flight there). ``streams``: ``config.streams``."""
        self.on_revoke = on_revoke
        self.group_id = group_id
        self.topics = list(topics)
        self.codec = codec or default_codec(streams)
        self.validate = validate
        self._own_producer = dead_letters is None
        self.dead_letters = dead_letters or DeadLetterWriter(EventProducer(streams, self.codec), group_id)
        self._consumer = Consumer(consumer_config(streams.kafka, streams.stack, group_id, **overrides))
        self._positions: dict[tuple[str, int], int] = {}   # next offset per partition, as polled
        # The partitions this consumer owns, replaced (never mutated) from the rebalance callbacks,
        # so other threads may read it; the Consumer itself must only be called from the polling thread.
        self.assigned: frozenset[tuple[str, int]] = frozenset()
        self._consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        self.dead_lettered = 0

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = self.assigned | {(tp.topic, tp.partition) for tp in partitions}

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = [(tp.topic, tp.partition) for tp in partitions]
        if self.on_revoke is not None:
            self.on_revoke(revoked)
        self.assigned = self.assigned - set(revoked)
        for key in revoked:              # positions of partitions we no longer own must not be committed
            self._positions.pop(key, None)

    # ------------------------------------------------------------ polling

    def poll_batch(self, max_records: int = 500, timeout: float = 1.0) -> list[DecodedRecord]:
        """Up to ``max_records`` decoded records, waiting at most ``timeout`` seconds for the first."""
        out: list[DecodedRecord] = []
        for msg in self.poll_raw(max_records, timeout):
            record = self.decode_message(msg)
            if record is not None:
                out.append(record)
        return out

    def poll_raw(self, max_records: int = 500, timeout: float = 1.0) -> list[Message]:
        """Up to ``max_records`` undecoded messages (errors handled, tombstones skipped).

        For sinks that hand the Avro bodies on in bulk (the ClickHouse sink lets the
        engine decode them); each message they do not take that way must go through
        ``decode_message``, which dead-letters what it cannot decode or validate.
        """
        messages = self._consumer.consume(max_records, timeout)
        out: list[Message] = []
        positions = self._positions
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._on_error(err)
                continue
            positions[(msg.topic(), msg.partition())] = msg.offset() + 1
            if msg.value() is None:      # a tombstone (compacted topics): nothing to decode or dead-letter
                continue
            out.append(msg)
        return out

    def positions(self) -> dict[tuple[str, int], int]:
        """librdkafka's position (next offset to fetch) of every assigned partition; negative: not known yet."""
        assigned = self._consumer.assignment()
        if not assigned:
            return {}
        return {(tp.topic, tp.partition): tp.offset for tp in self._consumer.position(assigned)}

    def polled_positions(self) -> dict[tuple[str, int], int]:
        """The next offset per owned partition, as polled (records this caller skipped included)."""
        return dict(self._positions)

    def decode_message(self, msg: Message) -> DecodedRecord | None:
        """The decoded record of a polled message, or None after dead-lettering it."""
        topic = msg.topic()
        try:
            name, record = self.codec.decode_for_topic(topic, msg.value(), validate=self.validate)
        except (DecodeError, ValidationError) as exc:
            self._dead_letter(msg, exc.reason, str(exc))
            return None
        key = msg.key()
        return DecodedRecord(topic, msg.partition(), msg.offset(),
                             key.decode("utf-8", "replace") if key is not None else None,
                             name, record, msg.timestamp()[1])

    def _dead_letter(self, msg: Any, reason: str, error: str) -> None:
        self.dead_letters.send(msg.topic(), msg.value() or b"", key=msg.key(), partition=msg.partition(),
                               offset=msg.offset(), reason=reason, error=error)
        self.dead_lettered += 1

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal() or not err.retriable() and err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                                 KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                                                 KafkaError.GROUP_AUTHORIZATION_FAILED):
            raise KafkaException(err)
        log.warning("consumer %s: %s", self.group_id, err.str())

    # ------------------------------------------------------------ commits

    def commit(self, offsets: Offsets = None) -> list[TopicPartition]:
        """Synchronously commit; call only after the records' work landed.

        ``offsets``: None commits everything polled so far (dead-lettered records
        included); records commit past each one given (highest per partition);
        a mapping {(topic, partition): next_offset} or TopicPartitions commit
        exactly those. Dead letters are flushed first. Raises CommitError.
        """
        tps = self._to_partitions(offsets)
        if not tps:
            return []
        if self.dead_lettered:
            self.dead_letters.flush()
        try:
            result = self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            raise CommitError("commit_failed", f"group {self.group_id}: {exc}") from exc
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            raise CommitError("commit_failed", "; ".join(f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in failed))
        return list(result or [])

    def _to_partitions(self, offsets: Offsets) -> list[TopicPartition]:
        if offsets is None:
            return [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]
        if isinstance(offsets, Mapping):
            return [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        items = list(offsets)
        if items and isinstance(items[0], TopicPartition):
            return [tp for tp in items if tp.offset != OFFSET_INVALID]
        best: dict[tuple[str, int], int] = {}
        for r in items:
            k = (r.topic, r.partition)
            best[k] = max(best.get(k, -1), r.offset + 1)
        return [TopicPartition(t, p, o) for (t, p), o in best.items()]

    def committed(self, timeout: float = 10.0) -> dict[tuple[str, int], int]:
        """The group's committed offsets of the currently assigned partitions."""
        parts = self._consumer.committed(self._consumer.assignment(), timeout=timeout)
        return {(tp.topic, tp.partition): tp.offset for tp in parts}

    def high_watermark(self, topic: str, partition: int) -> int | None:
        """The partition's end offset as last seen by a fetch (no broker round trip); None if unknown."""
        try:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    def assignment(self) -> list[TopicPartition]:
        return self._consumer.assignment()

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Leave the group (without committing anything) and flush own dead letters."""
        try:
            self._consumer.close()
        finally:
            if self._own_producer:
                self.dead_letters.flush()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
