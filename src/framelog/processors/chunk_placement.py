"""Which partition of the chunk jobs' topic each new job goes to: the least loaded chunk worker's.

A consumer group hands its members fixed sets of partitions, and Faust's assignor is
sticky: when a second chunk worker joins, the first keeps partitions 0-2 of 6 and the
second gets 3-5. Jobs placed by their index alone (``index % partitions``) follow those
sets, not the workers: a video's ten chunks and its audio on six partitions gave one of
two workers six chunks and the other four (the pipeline benchmark's 1.67x where two
workers should approach 2x). Placing each job on a partition of the member with the
fewest jobs waiting (its partitions' lag, plus the jobs this placement already gave it)
deals a video evenly over whoever is in the group now, and a busy worker's queue is not
lengthened while another sits idle. A later rebalance moves partitions, not correctness:
every job is still consumed exactly once, by whoever then owns its partition.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MemberLoad:
    """One member of the chunk workers' group: its partitions of the jobs' topic and each one's lag
    (records not yet committed: the job it is running, then those queued behind it)."""

    lags: Mapping[int, int]

    @property
    def queued(self) -> int:
        return sum(self.lags.values())

    @property
    def emptiest_partition(self) -> int:
        """Its partition with the fewest jobs waiting (ties: the lowest number). One partition per member and
        placement keeps the member's share of a video in order: its earliest chunk is encoded first."""
        return min(self.lags, key=lambda p: (self.lags[p], p))


def place_jobs(count: int, members: Sequence[MemberLoad], partitions: int, *, first_index: int = 0) -> list[int]:
    """The partition of each of ``count`` jobs, in the order they will be produced.

    Each job goes to the member with the fewest jobs queued (ties: the order ``members`` is given), on that
    member's emptiest partition. With no member owning any partition (no worker running yet, or the group
    could not be read) the jobs fall back to their index (``first_index`` onwards) modulo ``partitions``:
    whoever joins first takes them all.
    """
    owners = [m for m in members if m.lags]
    if not owners:
        return [(first_index + i) % partitions for i in range(count)]
    queued = [m.queued for m in owners]
    placed = []
    for _ in range(count):
        k = min(range(len(owners)), key=lambda k: (queued[k], k))
        placed.append(owners[k].emptiest_partition)
        queued[k] += 1
    return placed
