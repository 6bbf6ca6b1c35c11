"""A table folded from topics replayed from the beginning: the log is the durable state.

A ``ReplayedTable`` consumes its topics in a consumer group of its own (unique
per instance) and never commits, so a restarted process rebuilds exactly the
same table. It counts as *ready* once it has consumed up to the end offsets
that existed when it started; callers wait for that with a deadline instead
of answering from a half-loaded table. After writing an event, a caller can
wait until the table has folded that very offset (``wait_offset``): read your
own writes on this replica.

Subclasses say how one decoded record changes the table (``_fold``); reads
take ``self._lock``.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self

from confluent_kafka import OFFSET_INVALID, TopicPartition

from framelog.core.backoff import Backoff
from framelog.core.config import StreamsConfig
from framelog.streams.consumer import DecodedRecord, EventConsumer
from framelog.streams.dead_letter import DeadLetterWriter
from framelog.streams.producer import EventProducer

log = logging.getLogger(__name__)

RECONNECT_BACKOFF = Backoff(0.5, 10.0)   # after broker trouble: 0.5 s, doubling, at most 10 s


class ReplayConsumer(EventConsumer):
    """An EventConsumer that also reports where it stands against the partitions' end offsets.

    Positions come from librdkafka (not from the records returned), so
    tombstones and dead-lettered records count as consumed too.
    """

    def partitions(self, topic: str, timeout: float) -> list[int]:
        meta = self._consumer.list_topics(topic, timeout=timeout)
        t = meta.topics.get(topic)
        if t is None or t.error is not None:
            raise RuntimeError(f"topic {topic}: {t.error if t is not None else 'not found'}")
        return sorted(t.partitions)

    def watermarks(self, topic: str, timeout: float) -> dict[int, tuple[int, int]]:
        return {p: self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
                for p in self.partitions(topic, timeout)}


class ReplayedTable:
    """Replays ``topics`` in a background thread and folds every record; thread-safe reads."""

    def __init__(self, streams: StreamsConfig, topics: Sequence[str], *, group_prefix: str,
                 group_id: str | None = None):
        """``streams``: ``config.streams``, what the table's consumer reads."""
        self.streams = streams
        self.topics = tuple(topics)
        self.group_id = group_id or f"{group_prefix}-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._targets: dict[tuple[str, int], tuple[int, int]] | None = None    # (topic, partition) -> (low, high)
        self._positions: dict[tuple[str, int], int] = {}
        self._progress_cond = threading.Condition()
        self.last_error: str | None = None
        self.records = 0
        self._listeners: list[Callable[[list[DecodedRecord | Mapping[str, Any]]], None]] = []
        self._sync_wanted = 0                   # sync() requests, served by the consuming thread
        self._sync_served = 0
        self._sync_targets: dict[tuple[str, int], int] = {}
        # where undecodable records are dead-lettered: a producer the process shares (the API's one), set
        # before start(); None: the consumer opens a producer of its own
        self.dead_letter_producer: EventProducer | None = None

    # ------------------------------------------------------------ to override

    def _fold(self, record: DecodedRecord | Mapping[str, Any]) -> None:
        """Apply one record to the table (called with ``self._lock`` held)."""
        raise NotImplementedError

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"replay-{self.group_id}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ReplayedTable:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """True once the table has caught up with the log as it was at start; False at the deadline."""
        return self._ready.wait(timeout)

    # ------------------------------------------------------------ folding and waiting

    def apply(self, records: Iterable[DecodedRecord | Mapping[str, Any]]) -> None:
        """Fold records; used by the consuming thread and by tests."""
        folded = []
        with self._lock:
            for r in records:
                self._fold(r)
                self.records += 1
                folded.append(r)
        for listener in self._listeners:       # after the fold: a listener reading the table sees the change
            listener(folded)
        with self._progress_cond:
            self._progress_cond.notify_all()

    def on_folded(self, listener: Callable[[list[DecodedRecord | Mapping[str, Any]]], None]) -> None:
        """Call ``listener`` with every batch of records once folded (e.g. to invalidate a cache)."""
        self._listeners.append(listener)

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds (checked after every folded batch); False at the deadline."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._progress_cond:
                self._progress_cond.wait(min(left, 0.5))
        return True

    def folded(self, topic: str, partition: int, offset: int) -> bool:
        """Whether the record at ``offset`` of ``topic[partition]`` has been folded."""
        with self._progress_cond:
            return self._positions.get((topic, partition), OFFSET_INVALID) > offset

    def sync(self, timeout: float) -> bool:
        """Wait until the table has folded everything on its topics now (the end offsets as of this call).

        For a reader that must see every record written before some event it
        is handling (a webhook endpoint registered just before the event).
        """
        with self._progress_cond:
            self._sync_wanted += 1
            wanted = self._sync_wanted

        def done() -> bool:
            with self._progress_cond:
                if self._sync_served < wanted:
                    return False
                return all(self._positions.get(tp, OFFSET_INVALID) >= hi for tp, hi in self._sync_targets.items())
        return self.ready and self.wait_until(done, timeout)

    def _serve_sync(self, consumer: ReplayConsumer) -> None:
        with self._progress_cond:
            wanted = self._sync_wanted
        if wanted <= self._sync_served:
            return
        targets = {(t, p): hi for t in self.topics for p, (lo, hi) in consumer.watermarks(t, timeout=10.0).items()
                   if hi > lo}
        with self._progress_cond:
            self._sync_targets, self._sync_served = targets, wanted
            self._progress_cond.notify_all()

    def wait_offset(self, topic: str, partition: int, offset: int, timeout: float) -> bool:
        """Wait until the record written at ``offset`` is in the table (read your own writes)."""
        return self.wait_until(lambda: self.folded(topic, partition, offset), timeout)

    # ------------------------------------------------------------ the consuming thread

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            consumer = None
            try:
                shared = self.dead_letter_producer
                from_start: dict[str, Any] = {"auto.offset.reset": "earliest"}
                consumer = ReplayConsumer(self.streams, self.group_id, list(self.topics),
                                          dead_letters=None if shared is None else DeadLetterWriter(shared,
                                                                                                    self.group_id),
                                          **from_start)
                if self._targets is None:
                    self._targets = {(t, p): marks for t in self.topics
                                     for p, marks in consumer.watermarks(t, timeout=10.0).items()}
                    log.info("table %s: replaying %s up to %s", self.group_id, self.topics, self._targets)
                failures = 0
                while not self._stop.is_set():
                    self._serve_sync(consumer)
                    batch = consumer.poll_batch(1000, 0.2)
                    positions = consumer.positions()
                    self.apply(batch)
                    with self._progress_cond:
                        self._positions.update({k: v for k, v in positions.items() if v >= 0})
                        self._progress_cond.notify_all()
                    if not self._ready.is_set() and self._caught_up():
                        log.info("table %s: caught up (%d records)", self.group_id, self.records)
                        self.last_error = None
                        self._ready.set()
            except Exception as exc:  # noqa: BLE001 - keep replaying through broker trouble
                self.last_error = f"{type(exc).__name__}: {exc}"
                failures += 1
                wait = RECONNECT_BACKOFF.delay(failures)
                log.warning("table %s: %s; retrying in %.1fs", self.group_id, self.last_error, wait)
                self._stop.wait(wait)
            finally:
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:  # noqa: BLE001
                        pass
                # a replacement consumer replays from the beginning again: folds are idempotent,
                # so the table stays as it is meanwhile

    def _caught_up(self) -> bool:
        pending = {tp: hi for tp, (lo, hi) in (self._targets or {}).items() if hi > lo}
        with self._progress_cond:
            return all(self._positions.get(tp, OFFSET_INVALID) >= hi for tp, hi in pending.items())
