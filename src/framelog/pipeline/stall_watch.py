"""The stall watchdog: a worker whose group leaves a partition behind, unadvanced, exits, so it rejoins.

Why (issue 14 pt 2): after a kill -9 of the broker a Faust member can stay in
its group, heartbeating from aiokafka's thread, while nothing ever commits one
of the partitions again. The fault suite found ``framelog-popularity`` 706
records behind on ``playback.events[4]`` for 300 s and more, with no rejoin,
no revocation and no warning from Faust (its livelock detector compares the
high-water mark with the fetch position, not with the committed offset, and
is off while the app believes it is rebalancing). Reproduced here as well: a
worker that joined while the restarted broker still reported its topics
missing was assigned nothing, and the group stayed STABLE with every
partition unowned until aiokafka's next metadata refresh (5 minutes). The
group sees a healthy member either way; only a new join fixes it. A fresh
process joins, is assigned the partitions and reads on from the committed
offsets: nothing acknowledged is lost, and what was handled but not committed
is handled again, which the agents tolerate.

The decision (``StallWatch``) is pure: a partition is stalled when it has lag
and its committed offset has not moved for ``limit`` seconds. Judged are the
partitions this member owns and, when the group is STABLE, those of its topics
no member owns (``judged``). The limit is ``kafka.stall_timeout`` plus the
longest time one record of the group may legitimately take
(``pipeline.worker.stall_limit``). Only what was seen on a reachable broker
counts: when the broker cannot be asked, every clock starts again, so a broker
outage alone never makes a member exit, and once it is back the member has
the whole limit to resume.

``StallWatchdog`` asks the broker (``ops.groups.describe_groups``, the view
``framelog groups`` and the fault suite's lag check use) from a thread of its
own, so a stuck event loop is caught as well, and calls ``on_stall`` (in a
worker: log and exit).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient

from framelog.core.config import KafkaConfig, StackConfig
from framelog.ops.groups import GroupReport, PartitionLag, describe_groups
from framelog.streams.admin import admin_client

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]
CHECKS_PER_LIMIT = 10       # the broker is asked this often per limit: a stall is acted on within a tenth past it
STABLE = "STABLE"


def judged(report: GroupReport, owned: Iterable[TopicPartitionKey],
           topics: Iterable[str]) -> dict[TopicPartitionKey, PartitionLag]:
    """The partitions this member answers for: those it owns, and, once the group is STABLE (not in the
    middle of a rebalance), the partitions of its input ``topics`` that no member owns (a topic the group
    read once and no longer subscribes to is nobody's work). Changelogs are not work."""
    assigned = {tp for m in report.members for tp in m.partitions}
    mine, inputs = set(owned), set(topics)
    orphans = report.state == STABLE
    return {(p.topic, p.partition): p for p in report.partitions if not p.is_changelog
            and ((p.topic, p.partition) in mine
                 or (orphans and p.topic in inputs and (p.topic, p.partition) not in assigned))}


@dataclass
class StallWatch:
    """Which partitions have had lag, with the same committed offset, for ``limit`` seconds or more."""

    limit: float
    _since: dict[TopicPartitionKey, tuple[int | None, float]] = field(default_factory=dict)  # committed, since

    def observe(self, now: float,
                positions: Mapping[TopicPartitionKey, PartitionLag] | None) -> list[TopicPartitionKey]:
        """``positions``: the judged partitions now, as the broker sees them (None: it could not be asked).

        Returns the stalled partitions (sorted); a partition that moved, caught
        up, or is no longer judged starts from scratch when seen behind again.
        """
        if positions is None:
            self._since.clear()
            return []
        for tp in set(self._since) - set(positions):
            del self._since[tp]
        stalled = []
        for tp, pos in positions.items():
            seen = self._since.get(tp)
            if pos.lag <= 0:
                self._since.pop(tp, None)
            elif seen is None or seen[0] != pos.committed:
                self._since[tp] = (pos.committed, now)
            elif now - seen[1] >= self.limit:
                stalled.append(tp)
        return sorted(stalled)


class StallWatchdog:
    """Every ``limit / CHECKS_PER_LIMIT`` seconds asks the broker where ``group_id`` stands, and calls
    ``on_stall`` once with the stalled partitions (``owned()``: what this member holds now; ``topics``:
    what the group reads)."""

    def __init__(self, kafka: KafkaConfig, stack: StackConfig, group_id: str,
                 owned: Callable[[], Iterable[TopicPartitionKey]], topics: Iterable[str], limit: float,
                 on_stall: Callable[[list[TopicPartitionKey]], None], *, clock: Callable[[], float] = time.monotonic):
        """``kafka, stack``: the broker to ask (``config.kafka, config.stack``)."""
        self.kafka, self.stack = kafka, stack
        self.group_id = group_id
        self.owned = owned
        self.topics = frozenset(topics)
        self.watch = StallWatch(limit)
        self.on_stall = on_stall
        self.clock = clock
        self.interval = limit / CHECKS_PER_LIMIT
        self.timeout = max(self.interval, 1.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stall-watchdog-{group_id}", daemon=True)
        self._admin: AdminClient | None = None

    def start(self) -> StallWatchdog:
        log.info("stall watchdog of %s: a partition left behind and not committed for %.0fs ends this member",
                 self.group_id, self.watch.limit)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def check(self) -> list[TopicPartitionKey]:
        """One look: the stalled partitions (empty when none, or when the broker could not be asked)."""
        positions: dict[TopicPartitionKey, PartitionLag] | None
        try:
            owned = list(self.owned())
            if self._admin is None:
                self._admin = admin_client(self.kafka, self.stack)
            report = describe_groups(self.kafka, self.stack, [self.group_id], timeout=self.timeout,
                                     admin=self._admin)[0]
            positions = judged(report, owned, self.topics)
        except Exception as exc:  # noqa: BLE001 - broker away or assignment changing: no information this round
            log.debug("stall watchdog of %s: no positions this round: %s", self.group_id, exc)
            positions = None
        return self.watch.observe(self.clock(), positions)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            stalled = self.check()
            if stalled:
                self.on_stall(stalled)
                return
