"""A stage's parallel_jobs slots, handed out by priority.

Each priority level of a stage has its own request topic and Faust agent (so an
agent stays a plain loop over one topic); all of them call the one StageRunner,
which takes a slot here before a job starts. While every slot is busy, requests
wait; a freed slot goes to the waiting request of the highest priority (rank 0
first), then to the one that came first. Records still in Kafka are the queue's
tail: each agent holds at most its concurrency in flight.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PriorityGate:
    def __init__(self, slots: int):
        self._free = slots
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, fut in self._waiters if not fut.done())

    @asynccontextmanager
    async def slot(self, rank: int) -> AsyncIterator[None]:
        """Hold one slot for the block; ``rank`` 0 is served first."""
        if self._free > 0 and not self.waiting:
            self._free -= 1
        else:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (rank, next(self._order), fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():   # the slot came with the cancellation: pass it on
                    self._release()
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            *_, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1
