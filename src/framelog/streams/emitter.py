"""Async face of EventProducer for Faust agents: emit and wait for the broker's ack.

An agent awaits each output before it moves on, so its input offset is
committed (by Faust, after the agent finished the record) only once every
event it caused is acknowledged: at-least-once end to end. Pipeline events are
a handful per video, so waiting per event costs nothing that matters.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from framelog.core.config import Config
from framelog.schemas.codec import AvroCodec
from framelog.streams.dead_letter import DeadLetterWriter
from framelog.streams.producer import Delivery, EventProducer, Key


class AsyncEmitter:
    def __init__(self, config: Config, codec: AvroCodec | None = None, consumer_group: str | None = None):
        self.producer = EventProducer(config, codec)
        self.dead_letters = DeadLetterWriter(self.producer, consumer_group)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="emitter")

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def emit(self, topic: str, name: str, record: Mapping[str, Any], key: Key = None) -> Delivery:
        """Encode, produce and wait for acks=all; raises DeliveryError."""
        return await self._call(self.producer.deliver, topic, name, record, key)

    async def dead_letter(self, original_topic: str, value: bytes | None, *, key: Key = None,
                          partition: int | None = None, offset: int | None = None,
                          reason: str, error: str) -> None:
        """Send the original bytes to ``<topic>.dlq`` with the reason, and wait for the ack."""
        def send() -> None:
            if self.dead_letters.send(original_topic, value, key=key, partition=partition, offset=offset,
                                      reason=reason, error=error):
                self.dead_letters.flush()
        await self._call(send)

    def close(self) -> None:
        self.producer.flush()
        self._pool.shutdown(wait=False)
