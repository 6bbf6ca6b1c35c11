"""The one async bridge over EventProducer: emit from a coroutine and await the broker's ack.

A Faust agent awaits each output before it moves on, so its input offset is
committed (by Faust, after the agent finished the record) only once every
event it caused is acknowledged: at-least-once end to end. The API's routes
await a batch of already-encoded records the same way (``send_encoded``).

No thread waits on a delivery: a poller thread serves the producer's delivery
reports and settles each record's future on the loop that awaits it; only
the produce call runs in a worker thread (librdkafka blocks it while its local
queue is full).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from framelog.core.config import StreamsConfig
from framelog.schemas.codec import AvroCodec
from framelog.schemas.record import EventRecord
from framelog.streams.dead_letter import DeadLetterWriter
from framelog.streams.exceptions import DeliveryError
from framelog.streams.producer import Delivery, DeliveryCallback, EventProducer, Key, record_key

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT = 30.0          # seconds an emit waits for the acknowledgement (the producer's own default)
MAX_REPORTED = 20


class AsyncEmitter:
    """Typed records (and encoded batches) to Kafka from async code, acknowledged before the await returns."""

    def __init__(self, streams: StreamsConfig, codec: AvroCodec | None = None, consumer_group: str | None = None,
                 *, producer: EventProducer | None = None, **producer_overrides: Any):
        """``streams``: ``config.streams``, for the producer opened unless ``producer`` is given."""
        self.producer = producer or EventProducer(streams, codec, **producer_overrides)
        self.dead_letters = DeadLetterWriter(self.producer, consumer_group)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="emitter-delivery-poller", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.producer.poll(0.1)
            except Exception:  # noqa: BLE001 - a failing callback must not stop delivery reports
                log.exception("delivery report poller")

    # ------------------------------------------------------------ sending

    async def emit(self, topic: str, record: EventRecord, key: Key = None,
                   timeout: float = DELIVERY_TIMEOUT, partition: int | None = None) -> Delivery:
        """Encode, produce and wait for acks=all; raises DeliveryError (EncodeError/ValidationError at once).
        ``partition`` overrides the key's (an explicit spread, e.g. chunk jobs)."""
        value = self.producer.encode(topic, record)
        return (await self.send_encoded([(topic, record_key(record, key), value)], timeout, record.record_name,
                                        partition=partition))[0]

    async def emit_all(self, records: Sequence[tuple[str, EventRecord]],
                       timeout: float = DELIVERY_TIMEOUT) -> list[Delivery]:
        """Several (topic, record) pairs produced together; returns once every one is acknowledged."""
        encoded = [(topic, record_key(r), self.producer.encode(topic, r)) for topic, r in records]
        return await self.send_encoded(encoded, timeout)

    async def send_encoded(self, encoded: Sequence[tuple[str, Key, bytes]], timeout: float = DELIVERY_TIMEOUT,
                           what: str = "record", *, partition: int | None = None) -> list[Delivery]:
        """Produce (topic, key, bytes) records and return once the broker acknowledged all of them, in order;
        raises DeliveryError (produce_failed, timeout, not_acknowledged)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[tuple[KafkaError | None, Message]]] = [loop.create_future() for _ in encoded]

        def reporter(fut: asyncio.Future[tuple[KafkaError | None, Message]]) -> DeliveryCallback:
            def report(err: KafkaError | None, msg: Message) -> None:
                def settle() -> None:
                    if not fut.done():
                        fut.set_result((err, msg))
                try:
                    loop.call_soon_threadsafe(settle)
                except RuntimeError:            # the awaiting loop is gone (it timed out and closed)
                    pass
            return report

        def produce_all() -> None:
            for (topic, key, value), fut in zip(encoded, futures, strict=True):
                self.producer.send_raw(topic, value, key, on_delivery=reporter(fut), partition=partition)

        try:
            await loop.run_in_executor(None, produce_all)     # send_raw waits while the local queue is full
        except (KafkaException, BufferError) as exc:
            raise DeliveryError("produce_failed", f"could not queue {what}: {exc}") from exc
        if not futures:
            return []
        _, pending = await asyncio.wait(futures, timeout=timeout)
        if pending:
            raise DeliveryError("timeout", f"{len(pending)} of {len(futures)} {what}(s) not acknowledged within "
                                f"{timeout:g}s (they may still be delivered later)")
        reports = [f.result() for f in futures]
        errors = [err.str() for err, _ in reports if err is not None]
        if errors:
            raise DeliveryError("not_acknowledged", f"{len(errors)} of {len(futures)} {what}(s) not acknowledged: "
                                f"{errors[0]}", errors[:MAX_REPORTED])
        return [Delivery.of(msg) for _, msg in reports]

    async def dead_letter(self, original_topic: str, value: bytes | None, *, key: Key = None,
                          partition: int | None = None, offset: int | None = None,
                          reason: str, error: str) -> None:
        """Send the original bytes to ``<topic>.dlq`` with the reason, and wait for the ack."""
        def send() -> None:
            if self.dead_letters.send(original_topic, value, key=key, partition=partition, offset=offset,
                                      reason=reason, error=error):
                self.dead_letters.flush()
        await asyncio.get_running_loop().run_in_executor(None, send)

    def close(self, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Wait (bounded) for what is still queued, then stop the poller; raises DeliveryError like flush."""
        try:
            self.producer.flush(timeout)
        finally:
            self._stop.set()
            self._poller.join(timeout=5.0)
