"""Decide, act, then record: the tiering job's side effects, free of Faust.

For each rendition it owns, ``TieringEvaluator.evaluate`` asks
``processors.tier_ledger.next_move`` at the injected clock's ``now``; for a move
it first changes the objects' storage class (``TierMover.move``: idempotent and
verified), then emits the ``TierTransition`` event and waits for the broker's
ack. The tier in the table changes only when the agent folds that event back
from the log, so the log is the one record of every decision.

Why act-then-emit, and why a crash neither skips nor repeats a transition:

* killed during or after the copies, before the event: the table still holds
  the old tier, so the next evaluation decides the same move again; the mover
  copies only objects not yet in the class (none, or the rest) and the event
  is emitted once. Nothing is skipped, no object is copied twice;
* killed after the event was acknowledged: the event is on the log. A partition
  is evaluated only once the agent has folded every TierTransition the log held
  for it (at start: up to the end offset; after an emit: up to that event's
  offset), so the move is never decided twice. Should a duplicate still reach
  the log, it carries the same deterministic event id and the same from_tier,
  and the fold ignores it.

Only one evaluation runs at a time (an ``asyncio.Lock``), whether started by
the timer or by an access event.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from framelog.core.clock import Clock
from framelog.core.config import TieringConfig
from framelog.processors.tier_ledger import PlannedMove, RenditionRecord, next_move
from framelog.processors.tiering import SECONDS_PER_DAY, storage_class, tier
from framelog.schemas.records import TierTransition
from framelog.sinks.tier_mover import MoveReport, TierMover
from framelog.streams import topics

log = logging.getLogger(__name__)

Emit = Callable[[TierTransition], Awaitable[Any]]          # returns something with .partition and .offset
RunBlocking = Callable[..., Awaitable[Any]]


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def transition_record(move: PlannedMove, report: MoveReport) -> TierTransition:
    """The TierTransition event of a completed move (deterministic id, time from the clock)."""
    return TierTransition(event_id=move.event_id, event_time=move.decided_at,
                          video_id=move.video_id, rendition=move.rendition, object_keys=list(report.keys),
                          object_count=report.object_count, size_bytes=report.size_bytes, from_tier=move.from_tier,
                          to_tier=move.to_tier, storage_class=report.storage_class, rule=move.rule_name,
                          age_days=round(move.age_days, 6), access_count=move.access_count)


@dataclass
class LogGate:
    """Read-your-writes on the tiering agent's inputs.

    A newly owned partition opens once the agent folded every record that its
    source topics held when it was taken over (``start``): decisions are never
    made from a table still catching up (a rendition's age known, its accesses
    not yet). After that, a rendition whose TierTransition was just emitted
    waits until the agent folded that very record (``expect``), while the
    partition's other renditions go on.
    """
    own_topic: str = topics.TIER_TRANSITIONS
    started: dict[int, dict[str, int]] = field(default_factory=dict)   # partition -> topic -> end offset - 1
    seen: dict[tuple[str, int], int] = field(default_factory=dict)     # (topic, partition) -> highest folded
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)  # rendition key -> (partition, offset)

    @property
    def known(self) -> set[int]:
        return set(self.started)

    def start(self, partition: int, positions: Mapping[str, tuple[int, int]]) -> None:
        """A newly owned partition: per topic (committed offset or -1, end offset) at takeover."""
        self.started[partition] = {topic: end - 1 for topic, (_, end) in positions.items()}
        for topic, (committed, _) in positions.items():
            self.folded(topic, partition, committed - 1)

    def forget(self, partition: int) -> None:
        self.started.pop(partition, None)
        self.seen = {tp: o for tp, o in self.seen.items() if tp[1] != partition}
        self.pending = {k: v for k, v in self.pending.items() if v[0] != partition}

    def expect(self, key: str, partition: int, offset: int) -> None:
        self.pending[key] = (partition, offset)

    def folded(self, topic: str, partition: int, offset: int) -> None:
        self.seen[(topic, partition)] = max(self.seen.get((topic, partition), -1), offset)

    def open(self, partition: int, key: str) -> bool:
        targets = self.started.get(partition)
        if targets is None:
            return False
        if any(self.seen.get((topic, partition), -1) < end for topic, end in targets.items()):
            return False
        waiting = self.pending.get(key)
        if waiting is None:
            return True
        if waiting[0] == partition and self.seen.get((self.own_topic, partition), -1) >= waiting[1]:
            del self.pending[key]
            return True
        return False


class TieringEvaluator:
    def __init__(self, tiering: TieringConfig, clock: Clock, mover: TierMover, emit: Emit,
                 run_blocking: RunBlocking = _in_thread):
        """``tiering``: the tier policy (``config.tiering``)."""
        self.tiering, self.clock, self.mover, self.emit, self.run_blocking = tiering, clock, mover, emit, run_blocking
        self.gate = LogGate()
        self._restores_asked: set[str] = set()      # rendition keys whose objects got RestoreObject (this process)
        self.failures = 0
        self._lock = asyncio.Lock()

    async def _ask_restore(self, record: RenditionRecord) -> None:
        """A restore just started: ask object storage to make the archived objects readable (once per process)."""
        if record.restore is None:
            self._restores_asked.discard(record.key)
            return
        if record.key in self._restores_asked:
            return
        classes = [storage_class(name, self.tiering) for name, t in self.tiering.tiers.items()
                   if t.restore_delay > 0]
        days = max(1, math.ceil(self.tiering.restore_hold / SECONDS_PER_DAY))
        try:
            await self.run_blocking(self.mover.request_restore, record.object_prefix, classes, days)
        except Exception as exc:  # noqa: BLE001 - asked again at the next evaluation
            log.warning("tiering %s: RestoreObject failed: %s", record.key, exc)
            return
        self._restores_asked.add(record.key)

    async def evaluate(self, candidates: Iterable[tuple[int, str]],
                       load: Callable[[str], RenditionRecord | None]) -> list[PlannedMove]:
        """Move every candidate (partition, rendition key) that needs it; returns the moves made.

        Each record is loaded right before its decision, under the lock: one
        read earlier could predate a transition folded while another move ran.
        """
        async with self._lock:
            now = self.clock.now()
            done = []
            for partition, key in list(candidates):
                if not self.gate.open(partition, key):
                    continue
                record = load(key)
                if record is None:
                    continue
                await self._ask_restore(record)
                move = next_move(record, now, self.tiering)
                if move is None:
                    continue
                try:
                    report = await self.run_blocking(self.mover.move_between, move.object_prefix,
                                                     tier(move.from_tier, self.tiering),
                                                     tier(move.to_tier, self.tiering), now)
                except Exception as exc:  # noqa: BLE001 - S3 trouble: decide again at the next evaluation
                    self.failures += 1
                    log.warning("tiering %s/%s %s -> %s failed: %s", move.video_id, move.rendition,
                                move.from_tier, move.to_tier, exc)
                    continue
                delivery = await self.emit(transition_record(move, report))
                if delivery.partition != partition:
                    log.error("tiering: %s's TierTransition went to partition %d, its rows are in %d; are the "
                              "topics co-partitioned?", record.key, delivery.partition, partition)
                self.gate.expect(record.key, delivery.partition, delivery.offset)
                log.info("tiering %s/%s: %s -> %s by %r (age %.1f d, %d accesses, %d objects, %d copied)",
                         move.video_id, move.rendition, move.from_tier, move.to_tier, move.rule_name,
                         move.age_days, move.access_count, report.object_count, report.copied)
                done.append(move)
            return done


def owned_renditions(items: Iterable[tuple[str, Mapping[str, Any] | None]],
                     partitions: set[int]) -> list[tuple[int, str]]:
    """(partition, key) of the rendition rows (``{"partition": p, "record": {...}}``) in the partitions owned."""
    return [(row["partition"], key) for key, row in items
            if row is not None and "/" in key and row.get("partition") in partitions]
