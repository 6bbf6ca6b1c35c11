"""`framelog groups`: every consumer group, its members, and its lag per partition.

An operator scaling a stage needs three facts: how far behind each group is,
on which partitions, and who is consuming them. All three come from the
broker's admin API (no consumer joins any group to ask, so asking never
triggers a rebalance).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from framelog.core.config import KafkaConfig, StackConfig
from framelog.ops.provision import retry_until
from framelog.processors.chunk_placement import MemberLoad
from framelog.streams.admin import admin_client

CHANGELOG_SUFFIX = "-changelog"


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None     # None: the group has committed nothing on this partition
    end: int

    @property
    def lag(self) -> int:
        """Records of the partition the group has not committed (all of them when it committed none)."""
        return max(self.end - (self.committed or 0), 0)

    @property
    def is_changelog(self) -> bool:
        """A Faust table's changelog: assigned to the group to restore the table, read, never committed."""
        return self.topic.endswith(CHANGELOG_SUFFIX)


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class GroupReport:
    group_id: str
    state: str
    members: tuple[Member, ...] = ()
    partitions: tuple[PartitionLag, ...] = field(default_factory=tuple)

    @property
    def lag(self) -> int:
        """Records the group has still to process: its input partitions' lag (changelogs are not work)."""
        return sum(p.lag for p in self.partitions if not p.is_changelog)

    def member_loads(self, topic: str) -> list[MemberLoad]:
        """Each member's partitions of ``topic`` with their lag, members in the order of their lowest partition
        (where the chunk jobs go: processors/chunk_placement.py)."""
        lag = {p.partition: p.lag for p in self.partitions if p.topic == topic}
        loads = [MemberLoad({p: lag.get(p, 0) for t, p in m.partitions if t == topic}) for m in self.members]
        return sorted((m for m in loads if m.lags), key=lambda m: min(m.lags))


def _result(future, timeout: float):
    return future.result(timeout=timeout)


def list_group_ids(admin: AdminClient, timeout: float) -> list[str]:
    listing = _result(admin.list_consumer_groups(request_timeout=timeout), timeout + 1)
    return sorted(g.group_id for g in listing.valid)


def _end_offsets(admin: AdminClient, tps: Iterable[TopicPartition], timeout: float) -> dict[tuple[str, int], int]:
    request = {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in tps}
    if not request:
        return {}
    futures = admin.list_offsets(request, request_timeout=timeout)
    return {(tp.topic, tp.partition): _result(f, timeout + 1).offset for tp, f in futures.items()}


def _description(admin: AdminClient, group_id: str, timeout: float) -> Any:
    return _result(admin.describe_consumer_groups([group_id], request_timeout=timeout)[group_id], timeout + 1)


def _committed(admin: AdminClient, group_id: str, timeout: float) -> Any:
    return _result(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group_id)],
                                                     request_timeout=timeout)[group_id], timeout + 1)


def describe_groups(kafka: KafkaConfig, stack: StackConfig, group_ids: Iterable[str] | None = None, *,
                    timeout: float = 10.0, admin: AdminClient | None = None) -> list[GroupReport]:
    """One report per group (all groups the broker knows when ``group_ids`` is None), sorted by id
    (``config.kafka, config.stack``: the cluster, unless ``admin`` is given)."""
    admin = admin or admin_client(kafka, stack)
    ids = sorted(group_ids) if group_ids is not None else list_group_ids(admin, timeout)
    if not ids:
        return []
    deadline = time.monotonic() + timeout
    reports = []
    for group_id in ids:
        # a coordinator still loading or moving (a fresh or restarted broker) answers NOT_COORDINATOR: retried
        desc = retry_until(f"consumer group {group_id}", partial(_description, admin, group_id), deadline)
        committed_tps = retry_until(f"offsets of consumer group {group_id}",
                                    partial(_committed, admin, group_id), deadline).topic_partitions
        members = tuple(Member(m.member_id, m.client_id, m.host,
                               tuple(sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)))
                        for m in desc.members)
        # partitions the group committed on, and those assigned to a member without a commit yet
        tps = {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in committed_tps or []}
        for m in members:
            for topic, partition in m.partitions:
                tps.setdefault((topic, partition), None)
        ends = _end_offsets(admin, (TopicPartition(t, p) for t, p in tps), timeout)
        partitions = tuple(PartitionLag(t, p, committed, ends[(t, p)]) for (t, p), committed in sorted(tps.items()))
        reports.append(GroupReport(group_id, str(desc.state.name if hasattr(desc.state, "name") else desc.state),
                                   members, partitions))
    return reports


def format_reports(reports: Iterable[GroupReport], *, by_partition: bool = True) -> str:
    """The table `framelog groups` prints: a line per group, then its partitions and members."""
    lines = []
    for r in reports:
        lines.append(f"{r.group_id}  state={r.state}  members={len(r.members)}  lag={r.lag}")
        if by_partition:
            owner = {tp: m.client_id or m.member_id for m in r.members for tp in m.partitions}
            for p in r.partitions:
                committed = "-" if p.committed is None else str(p.committed)
                lag = "- (table changelog: read to restore, never committed)" if p.is_changelog else str(p.lag)
                lines.append(f"  {p.topic}[{p.partition}]  committed={committed}  end={p.end}  lag={lag}"
                             f"  member={owner.get((p.topic, p.partition), '-')}")
    return "\n".join(lines)
