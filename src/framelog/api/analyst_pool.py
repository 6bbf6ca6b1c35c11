"""Analysts' queries kept apart from everything else the API does.

Each analyst query runs on one of ``analyst_sql.max_concurrent_queries`` read-only
sessions of its own, on a thread pool of that same size, and takes no lock the sink or
``GET /v1/videos/{id}/analytics`` take (chdb runs queries on separate sessions side by
side). One query more than the cap is refused at once (429 with Retry-After) instead of
queueing: a queue that grows is the starvation the cap is there to prevent. A slot is
freed only when the engine is done with the query, even if the client went away.
"""
from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from framelog.core.config import AnalystSqlConfig

__all__ = ["AnalystPool"]

T = TypeVar("T")


class AnalystPool:
    def __init__(self, limits: AnalystSqlConfig, open_session: Callable[[], Any]):
        """``limits``: ``config.analyst_sql`` (the cap and Retry-After); ``open_session``: one read-only session."""
        self.capacity = limits.max_concurrent_queries
        self.retry_after = max(1, math.ceil(limits.retry_after))
        self._sessions: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._all = [open_session() for _ in range(self.capacity)]
        for session in self._all:
            self._sessions.put(session)
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._pool = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="analyst-sql")

    def try_submit(self, work: Callable[[Any], T]) -> Future[T] | None:
        """Run ``work(session)`` on the analysts' pool, or None when every slot is busy."""
        if not self._slots.acquire(blocking=False):
            return None
        session = self._sessions.get_nowait()      # a free slot always has a free session

        def done(_: Future[T]) -> None:
            self._sessions.put(session)
            self._slots.release()

        try:
            future = self._pool.submit(work, session)
        except BaseException:
            done(Future())
            raise
        future.add_done_callback(done)
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for session in self._all:
            session.close()
