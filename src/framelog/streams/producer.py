"""The idempotent event producer: encode, key by video id, and know what the broker acknowledged.

``enable.idempotence`` with ``acks=all`` means retries after a broker hiccup
never duplicate or reorder a record; a record counts as written only once its
delivery report arrived without error. ``send`` is asynchronous (batched);
``flush`` and ``send_and_wait`` raise DeliveryError when the broker did not
acknowledge, so no caller mistakes "queued" for "written".
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from framelog.core.config import Config
from framelog.schemas.codec import AvroCodec
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


def producer_config(config: Config, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings: idempotent, acks=all, batched."""
    conf: dict[str, Any] = {
        **client_settings(config),
        "client.id": f"{config.kafka.client_id}-producer",
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


class EventProducer:
    """Encodes framelog events and produces them; thread-safe like the librdkafka producer it wraps."""

    def __init__(self, config: Config, codec: AvroCodec | None = None, **overrides: Any):
        self.config = config
        self.codec = codec or AvroCodec(config)
        self._producer = Producer(producer_config(config, **overrides))
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._failed = 0
        self.acked = 0

    # ------------------------------------------------------------ sending

    def send(self, topic: str, event_name: str, record: Mapping[str, Any], key: Key = None,
             on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
        """Encode and queue one event; the key defaults to the record's video_id.

        Raises EncodeError/ValidationError/TopicSchemaError at once; delivery
        failures surface in ``flush`` (or ``on_delivery``).
        """
        value = self.codec.encode_for_topic(topic, event_name, record)
        if key is None:
            key = record.get("video_id")
        self.send_raw(topic, value, key, on_delivery)

    def send_raw(self, topic: str, value: bytes, key: Key = None,
                 on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
        """Queue already-encoded bytes (dead letters, replays, tests); waits while the local queue is full."""
        callback = self._on_delivery if on_delivery is None else self._chain(on_delivery)
        k = _key_bytes(key)
        while True:
            try:
                self._producer.produce(topic, value, k, on_delivery=callback)
                break
            except BufferError:            # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)
        self._producer.poll(0)

    def send_and_wait(self, topic: str, event_name: str, record: Mapping[str, Any], key: Key = None,
                      timeout: float = 30.0) -> int:
        """Produce one event and wait for the broker's acknowledgement; returns its offset."""
        return self.deliver(topic, event_name, record, key, timeout).offset

    def deliver(self, topic: str, event_name: str, record: Mapping[str, Any], key: Key = None,
                timeout: float = 30.0) -> Delivery:
        """Like send_and_wait, returning partition and offset; raises DeliveryError."""
        result: dict[str, Any] = {}
        done = threading.Event()

        def report(err: KafkaError | None, msg: Message) -> None:
            result.update(err=err, msg=msg)
            done.set()

        self.send(topic, event_name, record, key, on_delivery=report)
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
        return Delivery(msg.topic(), msg.partition(), msg.offset())

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
