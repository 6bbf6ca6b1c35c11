"""A generic batching sink (after Quix Streams' ``BatchingSink``).

Records are accumulated per ``(topic, partition)``. A flush writes each
partition's batch with one ``write(batch)`` call and, only after every such
call returned, hands the offsets to commit (``last offset + 1`` per
partition) to the ``on_committed`` callback. A sink therefore never commits
what it has not written: if ``write`` raises, the batch stays pending (a
retry writes the *same* batch again, so a deterministic per-batch token stays
valid) and nothing of it is committed.

A subclass may overlap its writes: ``start_write(batch)`` starts one and
returns a ``finish`` callable that blocks until it landed (or raises). A flush
starts the next partition's write before finishing the previous one, so at
most two are in flight, and still commits only what finished.

A subclass that sets ``pipelined = True`` also overlaps its writes with
consuming: a flush that a limit triggers (``add``/``add_many``/``poll``) starts
every pending batch's write and returns; the consumer goes on filling new
batches, and the writes are finished (and committed) when the next flush is
due, on an idle ``poll``, on ``revoke``, or on an explicit ``flush()``. At most
one flush is in flight, and the next one starts only after it finished, so a
subclass sees each partition's writes finish in offset order before it starts
the next one (its per-partition state, e.g. a dedup window, is up to date).

Flush triggers: ``max_rows`` pending rows, the oldest pending record older
than ``max_age`` seconds (checked on ``add`` and on ``poll``, which a consumer
loop calls when idle), or an explicit ``checkpoint()``/``flush()``.

Single-threaded by design: call it from the one consumer loop that owns the
partitions. On rebalance call ``revoke(partitions)``: pending records of
revoked partitions are dropped uncommitted, so the new owner replays them.
"""
from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batch", "BatchingSink", "TopicPartition", "CommitCallback"]


def _done() -> None:
    return None

TopicPartition = tuple[str, int]
CommitCallback = Callable[[dict[TopicPartition, int]], None]
Finish = Callable[[], None]


@dataclass
class Batch:
    """The pending records of one topic partition, in offset order."""
    topic: str
    partition: int
    records: list[Any] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    created_at: float = 0.0

    def append(self, record: Any, offset: int) -> None:
        if self.offsets and offset <= self.offsets[-1]:
            raise ValueError(f"{self.topic}[{self.partition}]: offset {offset} not after {self.offsets[-1]}")
        self.records.append(record)
        self.offsets.append(offset)

    def extend(self, records: Sequence[Any], offsets: Sequence[int]) -> None:
        """Append records in offset order (checked once per call, not per record)."""
        if len(records) != len(offsets):
            raise ValueError("records and offsets differ in length")
        previous = self.offsets[-1] if self.offsets else -1
        if offsets and (offsets[0] <= previous or any(a >= b for a, b in zip(offsets, offsets[1:]))):
            raise ValueError(f"{self.topic}[{self.partition}]: offsets not increasing after {previous}")
        self.records.extend(records)
        self.offsets.extend(offsets)

    @property
    def first_offset(self) -> int:
        return self.offsets[0]

    @property
    def last_offset(self) -> int:
        return self.offsets[-1]

    @property
    def commit_offset(self) -> int:
        """The offset to commit once this batch is durable (Kafka: next to read)."""
        return self.offsets[-1] + 1

    def __len__(self) -> int:
        return len(self.records)

    def prepend(self, older: Batch) -> None:
        """Put ``older`` (a batch of the same partition that failed to land) back in front."""
        if self.offsets and older.offsets and older.offsets[-1] >= self.offsets[0]:
            raise ValueError(f"{self.topic}[{self.partition}]: batch to put back overlaps the pending one")
        self.records[:0] = older.records
        self.offsets[:0] = older.offsets
        self.created_at = min(self.created_at, older.created_at)


class BatchingSink(abc.ABC):
    pipelined = False     # True: a triggered flush returns with its writes in flight (see module doc)

    def __init__(self, max_rows: int, max_age: float, on_committed: CommitCallback | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        if max_age <= 0:
            raise ValueError("max_age must be > 0")
        self.max_rows = max_rows
        self.max_age = max_age
        self.on_committed = on_committed
        self._clock = clock
        self._batches: dict[TopicPartition, Batch] = {}
        self._pending_rows = 0
        self._oldest: float | None = None
        self._in_flight: list[tuple[TopicPartition, Batch, Finish]] = []   # started, not yet finished

    # ------------------------------------------------------------ the contract

    @abc.abstractmethod
    def write(self, batch: Batch) -> None:
        """Durably write one partition's batch, or raise. Must be idempotent for a retried batch."""

    def start_write(self, batch: Batch) -> Callable[[], None]:
        """Start writing ``batch``; the returned callable blocks until it is durable, or raises.
        Default: write synchronously."""
        self.write(batch)
        return _done

    def on_revoked(self, partitions: Iterable[TopicPartition]) -> None:  # noqa: B027 - optional hook, not abstract
        """Hook for subclasses to forget per-partition state after a rebalance."""

    # ------------------------------------------------------------ accumulate

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def pending(self) -> Mapping[TopicPartition, Batch]:
        """Batches not yet being written."""
        return dict(self._batches)

    def uncommitted(self) -> Mapping[TopicPartition, Batch]:
        """Per partition, the oldest batch not yet committed: the one in flight, else the pending one."""
        out = dict(self._batches)
        out.update({key: batch for key, batch, _ in self._in_flight})
        return out

    def add(self, record: Any, topic: str, partition: int, offset: int) -> dict[TopicPartition, int] | None:
        """Accumulate one record; flushes (and returns the committed offsets) when a limit is reached."""
        now = self._clock()
        key = (topic, partition)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = Batch(topic, partition, created_at=now)
        batch.append(record, offset)
        self._pending_rows += 1
        if self._oldest is None:
            self._oldest = now
        if self._due(now):
            return self._flush_due()
        return None

    def add_many(self, records: Sequence[Any], topic: str, partition: int,
                 offsets: Sequence[int]) -> dict[TopicPartition, int] | None:
        """Accumulate one partition's records of a poll at once (the limits are checked after them,
        so a flush may hold up to one poll more than ``max_rows``)."""
        if not records:
            return None
        now = self._clock()
        key = (topic, partition)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = Batch(topic, partition, created_at=now)
        batch.extend(records, offsets)
        self._pending_rows += len(records)
        if self._oldest is None:
            self._oldest = now
        if self._due(now):
            return self._flush_due()
        return None

    def poll(self) -> dict[TopicPartition, int] | None:
        """Call when the consumer is idle: finish the writes in flight, and flush if the oldest
        pending record has waited ``max_age``."""
        committed = self._finish_in_flight() if self._in_flight else {}
        if self._pending_rows and self._due(self._clock()):
            committed.update(self._flush_due())
        return committed or None

    def _due(self, now: float) -> bool:
        return self._pending_rows >= self.max_rows or (
            self._oldest is not None and now - self._oldest >= self.max_age)

    # ------------------------------------------------------------ flush / commit

    def checkpoint(self) -> dict[TopicPartition, int]:
        return self.flush()

    def _flush_due(self) -> dict[TopicPartition, int]:
        """A limit was reached: flush, leaving the writes in flight if the sink is pipelined."""
        if not self.pipelined:
            return self.flush()
        committed = self._finish_in_flight()
        try:
            for key in sorted(self._batches):
                batch = self._batches[key]
                if len(batch):
                    self._in_flight.append((key, batch, self.start_write(batch)))
                del self._batches[key]
                self._pending_rows -= len(batch)
        finally:
            self._reset_oldest()
        return committed

    def _finish_in_flight(self) -> dict[TopicPartition, int]:
        """Wait for the writes a pipelined flush left in flight; commit those that landed.

        If one raises, it and the ones after it go back in front of the pending
        batches of their partitions (a retry writes the same boundaries again)
        and the exception propagates, after the ones before it were committed.
        """
        committed: dict[TopicPartition, int] = {}
        try:
            while self._in_flight:
                key, batch, finish = self._in_flight[0]
                finish()
                self._in_flight.pop(0)
                committed[key] = batch.commit_offset
        except BaseException:
            for key, batch, _ in self._in_flight:
                newer = self._batches.get(key)
                if newer is not None:
                    newer.prepend(batch)
                else:
                    self._batches[key] = batch
                self._pending_rows += len(batch)
            self._in_flight.clear()
            self._reset_oldest()
            raise
        finally:
            if committed and self.on_committed is not None:
                self.on_committed(dict(committed))
        return committed

    def flush(self) -> dict[TopicPartition, int]:
        """Write every pending batch and wait; commit (via ``on_committed``) the ones written.

        Writes a pipelined flush left in flight are finished (and committed) first.
        If a write raises, the batches already written are still reported to
        ``on_committed`` and the failed one (and any after it) stay pending;
        the exception propagates.
        """
        earlier = self._finish_in_flight() if self._in_flight else {}
        committed: dict[TopicPartition, int] = {}
        in_flight: tuple[TopicPartition, Batch, Callable[[], None]] | None = None

        def finish(entry: tuple[TopicPartition, Batch, Callable[[], None]]) -> None:
            key, batch, wait = entry
            wait()
            committed[key] = batch.commit_offset
            del self._batches[key]
            self._pending_rows -= len(batch)

        try:
            for key in sorted(self._batches):
                batch = self._batches[key]
                if not len(batch):
                    del self._batches[key]
                    continue
                started = self.start_write(batch)
                if in_flight is not None:
                    entry, in_flight = in_flight, None
                    finish(entry)
                in_flight = (key, batch, started)
            if in_flight is not None:
                entry, in_flight = in_flight, None
                finish(entry)
        except BaseException:
            if in_flight is not None:      # started before the failure: commit it if it landed
                try:
                    finish(in_flight)
                except Exception:
                    pass
            raise
        finally:
            self._reset_oldest()
            if committed and self.on_committed is not None:
                self.on_committed(dict(committed))
        return {**earlier, **committed}

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop pending (uncommitted) records of revoked partitions; their new owner replays them.

        Writes in flight are finished and committed first (the partitions are still ours
        while the consumer's revoke callback runs), so a new owner never races an insert."""
        if self._in_flight:
            self._finish_in_flight()
        partitions = list(partitions)
        for key in partitions:
            batch = self._batches.pop(tuple(key), None)  # type: ignore[arg-type]
            if batch is not None:
                self._pending_rows -= len(batch)
        self._reset_oldest()
        self.on_revoked(partitions)

    def _reset_oldest(self) -> None:
        self._oldest = min((b.created_at for b in self._batches.values() if len(b)), default=None)
