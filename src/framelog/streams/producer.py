"""The idempotent event producer: encode, key by video id, and know what the broker acknowledged.

``enable.idempotence`` with ``acks=all`` means retries after a broker hiccup
never duplicate or reorder a record; a record counts as written only once its
delivery report arrived without error.

Two ways to send a typed record (schemas/records.py, which knows its own
record name): ``emit(topic, record)`` waits for the broker's acknowledgement;
``enqueue(topic, record)`` batches, and ``flush`` raises DeliveryError for
anything the broker did not acknowledge, so no caller mistakes "queued" for
"written". ``send_raw`` queues bytes already encoded (dead letters, replays).
Async code uses the one bridge over this class, framelog.streams.emitter.AsyncEmitter.
``send``/``deliver`` take a record name and a dict: the adapter for code that
still builds dicts (the API's routes), to be retired when it builds records.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from framelog.core.config import KafkaConfig, StackConfig, StreamsConfig
from framelog.schemas.codec import AvroCodec, default_codec
from framelog.schemas.record import EventRecord
from framelog.streams.exceptions import DeliveryError
from framelog.streams.kafka_auth import client_settings

log = logging.getLogger(__name__)

MAX_REPORTED_FAILURES = 20

Key = str | bytes | None


@dataclass(frozen=True)
class Delivery:
    """Where an acknowledged record landed."""
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, msg: Message) -> Delivery:
        """Where an acknowledged message landed (its delivery report carried no error)."""
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None, "an unacknowledged message"
        return cls(topic, partition, offset)


def producer_config(kafka: KafkaConfig, stack: StackConfig, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings: idempotent, acks=all, batched (``config.kafka, config.stack``)."""
    conf: dict[str, Any] = {
        **client_settings(kafka, stack),
        "client.id": f"{kafka.client_id}-producer",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "message.timeout.ms": 120_000,      # give up (and report) after two minutes of retries
    }
    conf.update(overrides)
    return conf


def _key_bytes(key: Key) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return key.encode("utf-8")


def record_key(record: EventRecord, key: Key = None) -> Key:
    """The partition key: ``key`` if given, else the record's video_id (events of a video stay in order)."""
    return key if key is not None else getattr(record, "video_id", None)


DeliveryCallback = Callable[[KafkaError | None, Message], None]


class EventProducer:
    """Encodes framelog events and produces them; thread-safe like the librdkafka producer it wraps."""

    def __init__(self, streams: StreamsConfig, codec: AvroCodec | None = None, **overrides: Any):
        """``streams``: ``config.streams`` (the brokers, this process's identity, and the topic registry
        of the default codec)."""
        self.codec = codec or default_codec(streams)
        self._producer = Producer(producer_config(streams.kafka, streams.stack, **overrides))
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._failed = 0
        self.acked = 0

    # ------------------------------------------------------------ sending typed records

    def encode(self, topic: str, record: EventRecord) -> bytes:
        """The record's bytes for ``topic``; EncodeError/ValidationError/TopicSchemaError if it does not fit."""
        return self.codec.encode_for_topic(topic, record.record_name, record.to_avro())

    def emit(self, topic: str, record: EventRecord, key: Key = None, timeout: float = 30.0,
             partition: int | None = None) -> Delivery:
        """Produce one record and wait for the broker's acknowledgement; raises DeliveryError.
        The key defaults to the record's video_id; ``partition`` overrides the key's."""
        return self._deliver_bytes(topic, self.encode(topic, record), record_key(record, key), timeout,
                                   record.record_name, partition)

    def enqueue(self, topic: str, record: EventRecord, key: Key = None,
                on_delivery: DeliveryCallback | None = None, partition: int | None = None) -> None:
        """Encode and queue one record (batched); delivery failures surface in ``flush`` (or ``on_delivery``)."""
        self.send_raw(topic, self.encode(topic, record), record_key(record, key), on_delivery, partition)

    # ------------------------------------------------------------ the dict adapter (code that builds dicts)

    def send(self, topic: str, event_name: str, record: Mapping[str, Any], key: Key = None,
             on_delivery: DeliveryCallback | None = None) -> None:
        """``enqueue`` for a dict event named ``event_name``; the key defaults to its video_id."""
        value = self.codec.encode_for_topic(topic, event_name, record)
        if key is None:
            key = record.get("video_id")
        self.send_raw(topic, value, key, on_delivery)

    def deliver(self, topic: str, event_name: str, record: Mapping[str, Any], key: Key = None,
                timeout: float = 30.0) -> Delivery:
        """``emit`` for a dict event named ``event_name``; raises DeliveryError."""
        value = self.codec.encode_for_topic(topic, event_name, record)
        return self._deliver_bytes(topic, value, record.get("video_id") if key is None else key, timeout,
                                   event_name)

    # ------------------------------------------------------------ bytes

    def send_raw(self, topic: str, value: bytes, key: Key = None,
                 on_delivery: DeliveryCallback | None = None, partition: int | None = None) -> None:
        """Queue already-encoded bytes (dead letters, replays, tests); waits while the local queue is full.
        ``partition``: an explicit spread (e.g. chunk jobs) instead of the key's hash."""
        callback = self._on_delivery if on_delivery is None else self._chain(on_delivery)
        k = _key_bytes(key)
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, value, k, on_delivery=callback)
                else:
                    self._producer.produce(topic, value, k, partition=partition, on_delivery=callback)
                break
            except BufferError:            # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)
        self._producer.poll(0)

    def _deliver_bytes(self, topic: str, value: bytes, key: Key, timeout: float, event_name: str,
                       partition: int | None = None) -> Delivery:
        """Queue ``value`` and poll until its delivery report; raises DeliveryError."""
        result: dict[str, Any] = {}
        done = threading.Event()

        def report(err: KafkaError | None, msg: Message) -> None:
            result.update(err=err, msg=msg)
            done.set()

        self.send_raw(topic, value, key, on_delivery=report, partition=partition)
        deadline = time.monotonic() + timeout
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeliveryError("timeout", f"{event_name} to {topic}: no acknowledgement within {timeout:g}s "
                                    "(it may still be delivered later)")
            self._producer.poll(min(left, 0.1))
        err, msg = result["err"], result["msg"]
        if err is not None:
            raise DeliveryError("not_acknowledged", f"{event_name} to {topic}: {err.str()}", [err.str()])
        return Delivery.of(msg)

    # ------------------------------------------------------------ delivery reports

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.acked += 1
            return
        with self._lock:
            self._failed += 1
            if len(self._failures) < MAX_REPORTED_FAILURES:
                self._failures.append(f"{msg.topic()}: {err.str()}")
        log.error("delivery to %s failed: %s", msg.topic(), err.str())

    def _chain(self, user: Callable[[KafkaError | None, Message], None],
               ) -> Callable[[KafkaError | None, Message], None]:
        def callback(err: KafkaError | None, msg: Message) -> None:
            self._on_delivery(err, msg)
            user(err, msg)
        return callback

    def raise_failures(self) -> None:
        """Raise DeliveryError for asynchronous delivery failures seen since the last call."""
        with self._lock:
            failed, failures = self._failed, self._failures
            self._failed, self._failures = 0, []
        if failed:
            raise DeliveryError("not_acknowledged", f"{failed} record(s) were not acknowledged by the broker: "
                                f"{'; '.join(failures)}", failures)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports; returns how many were served."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued record is acknowledged; raises DeliveryError otherwise."""
        remaining = self._producer.flush(timeout)
        self.raise_failures()
        if remaining:
            raise DeliveryError("timeout", f"{remaining} record(s) still unacknowledged after {timeout:g}s")

    def __len__(self) -> int:
        """Records queued and not yet acknowledged."""
        return len(self._producer)

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is queued; raises like flush."""
        self.flush(timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:                               # do not hide the original error behind a flush error
            try:
                self.close()
            except Exception as close_exc:  # noqa: BLE001
                log.warning("while closing after an error: %s", close_exc)
