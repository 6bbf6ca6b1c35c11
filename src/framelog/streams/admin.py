"""Create or update framelog's topics from the registry (streams/topics.py), idempotently.

Running it twice changes nothing the second time; it never fails because a
topic already exists (another process may create it concurrently). Existing
topics get their configs altered incrementally (only the keys framelog sets)
and more partitions if the registry asks for more; partitions are never
removed (Kafka cannot), which the summary reports as a warning.

Replication follows the cluster (core/kafka_nodes.replication): the brokers it has (the live ones, or
``kafka.brokers``/the local stack's record if more) cap ``kafka.replication_factor``, and min ISR is
at most RF - 1: one broker gives 1/1 as before, three give RF 3 with min.insync.replicas 2, so a
producer with acks=all keeps writing, and loses nothing, with one broker down. Creating a topic while
fewer brokers than configured are up fails (INVALID_REPLICATION_FACTOR) rather than under-replicate.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from framelog.core.config import KafkaConfig, StackConfig, StreamsConfig
from framelog.core.kafka_nodes import replication, stack_brokers
from framelog.streams.kafka_auth import client_settings
from framelog.streams.topics import TopicSpec, all_topics

log = logging.getLogger(__name__)


@dataclass
class TopicsSummary:
    created: list[str] = field(default_factory=list)
    updated: dict[str, list[str]] = field(default_factory=dict)   # topic -> what changed
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line of totals, then one per topic created or updated, then warnings."""
        lines = [f"created {len(self.created)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}"]
        lines += [f"  created   {t}" for t in self.created]
        lines += [f"  updated   {t}: {', '.join(c)}" for t, c in self.updated.items()]
        lines += [f"  warning   {w}" for w in self.warnings]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())


def admin_client(kafka: KafkaConfig, stack: StackConfig) -> AdminClient:
    """An admin client (``config.kafka, config.stack``)."""
    return AdminClient({**client_settings(kafka, stack), "client.id": f"{kafka.client_id}-admin"})


def _partitions(spec: TopicSpec, kafka: KafkaConfig) -> int:
    return spec.partitions or kafka.default_partitions


def _existing(admin: AdminClient, timeout: float) -> dict[str, int]:
    md = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def cluster_replication(kafka: KafkaConfig, stack: StackConfig, admin: AdminClient,
                        timeout: float = 30.0) -> tuple[int, int]:
    """(replication factor, min ISR) for new topics on this cluster (see the module's docstring)."""
    live = len(admin.list_topics(timeout=timeout).brokers)
    return replication(kafka, max(live, stack_brokers(kafka, stack)))


def replication_factors(admin: AdminClient, names: Iterable[str], timeout: float = 30.0) -> dict[str, int]:
    """The smallest replica count among each topic's partitions (tools and tests)."""
    md = admin.list_topics(timeout=timeout)
    return {n: min(len(p.replicas) for p in md.topics[n].partitions.values())
            for n in names if n in md.topics and md.topics[n].partitions}


def create_topics(streams: StreamsConfig, specs: Iterable[TopicSpec] | None = None, *, timeout: float = 30.0,
                  admin: AdminClient | None = None) -> TopicsSummary:
    """Make the cluster match the topic registry (or ``specs``); returns what was done.
    ``streams``: ``config.streams`` (the cluster, and the registry when ``specs`` is None)."""
    kafka, stack = streams.kafka, streams.stack
    admin = admin or admin_client(kafka, stack)
    specs = list(specs) if specs is not None else all_topics(streams.topics)
    summary = TopicsSummary()
    existing = _existing(admin, timeout)
    rf, min_isr = cluster_replication(kafka, stack, admin, timeout)

    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=_partitions(s, kafka), replication_factor=rf,
                      config=s.kafka_config(min_isr)) for s in missing],
            request_timeout=timeout, operation_timeout=timeout)
        for name, fut in futures.items():
            try:
                fut.result()
                summary.created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        existing = _existing(admin, timeout) if len(summary.created) < len(missing) else existing

    replicas = replication_factors(admin, [s.name for s in specs if s.name not in summary.created], timeout)
    for spec in specs:
        if spec.name in summary.created:
            continue
        # never more in-sync replicas than an older, less replicated topic can give (it would refuse writes)
        topic_min_isr = min(min_isr, max(1, replicas.get(spec.name, rf) - 1))
        changes = _update(admin, spec, kafka, existing.get(spec.name, 0), summary, timeout, topic_min_isr)
        if changes:
            summary.updated[spec.name] = changes
        else:
            summary.unchanged.append(spec.name)
    _wait_visible(admin, [(s.name, _partitions(s, kafka)) for s in specs], timeout)
    for name, count in replication_factors(admin, [s.name for s in specs], timeout).items():
        if count < rf:
            summary.warnings.append(f"{name} has {count} replica(s), the cluster's shape asks for {rf}: "
                                    "raise it with a partition reassignment")
    return summary


def _update(admin: AdminClient, spec: TopicSpec, kafka: KafkaConfig, current_partitions: int,
            summary: TopicsSummary, timeout: float, min_isr: int) -> list[str]:
    """Alter the configs that differ and add partitions; returns the changes made."""
    changes: list[str] = []
    resource = ConfigResource(ResourceType.TOPIC, spec.name)
    current = admin.describe_configs([resource], request_timeout=timeout)[resource].result()
    wanted = spec.kafka_config(min_isr)
    diff = {k: v for k, v in wanted.items() if k not in current or current[k].value != v}
    if diff:
        alter = ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in diff.items()])
        admin.incremental_alter_configs([alter], request_timeout=timeout)[alter].result()
        changes += [f"{k}={v}" for k, v in sorted(diff.items())]
    want = _partitions(spec, kafka)
    if want > current_partitions:
        fut = admin.create_partitions([NewPartitions(spec.name, want)], request_timeout=timeout,
                                      operation_timeout=timeout)[spec.name]
        try:
            fut.result()
            changes.append(f"partitions {current_partitions}->{want}")
        except KafkaException as exc:   # a concurrent run already added them
            if exc.args[0].code() != KafkaError.INVALID_PARTITIONS:
                raise
    elif want < current_partitions:
        summary.warnings.append(f"{spec.name} has {current_partitions} partitions, registry asks for {want}: "
                                "Kafka cannot remove partitions; left as is")
    return changes


def _wait_visible(admin: AdminClient, wanted: list[tuple[str, int]], timeout: float) -> None:
    """Wait until metadata shows every topic with its partitions and leaders, so producers can start."""
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=max(deadline - time.monotonic(), 1.0))
        pending = [n for n, p in wanted
                   if n not in md.topics or md.topics[n].error is not None or len(md.topics[n].partitions) < p
                   or any(part.leader < 0 for part in md.topics[n].partitions.values())]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics not ready after {timeout:g}s: {', '.join(pending[:10])}")
        time.sleep(0.1)   # polling interval of a deadline-bounded wait


def delete_topics(kafka: KafkaConfig, stack: StackConfig, names: Iterable[str], *, timeout: float = 30.0) -> None:
    """Delete topics (tests and tools); missing ones are ignored (``config.kafka, config.stack``)."""
    admin = admin_client(kafka, stack)
    futures = admin.delete_topics(list(names), request_timeout=timeout, operation_timeout=timeout)
    for fut in futures.values():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
