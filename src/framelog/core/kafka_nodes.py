"""The local stack's Kafka nodes: how many a state dir runs, where each listens, what clients bootstrap from.

A state dir's KRaft cluster is formatted once for a number of nodes (``kafka.brokers``, or
``framelog stack up --brokers N``) and remembers it in ``<state>/kafka/brokers``: a quorum of three
cannot be turned into a single standalone node by editing a setting, and ``stack down`` must stop all
of them whatever the configuration says today. Node ``i`` (1-based) listens on ``stack.kafka_port``
and ``stack.kafka_controller_port`` plus ``stack.kafka_node_port_step * (i - 1)``, so a private stack
that moves the two ports moves every node.

Clients configured with the stack's own first address (the default) bootstrap from every node, so a
client started while node 1 is down still finds the cluster.
"""
from __future__ import annotations

from pathlib import Path

from framelog.core.config import KafkaConfig, StackConfig

BROKERS_FILE = Path("kafka") / "brokers"


def recorded_brokers(state_dir: Path) -> int | None:
    """The node count the state dir's cluster was formatted with (None: never formatted with a record)."""
    try:
        return int((state_dir / BROKERS_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def record_brokers(state_dir: Path, brokers: int) -> None:
    path = state_dir / BROKERS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{brokers}\n")


# Each takes the kafka and/or stack section it reads (``config.kafka``, ``config.stack``), not the whole
# Config (issue 12 pt 4).

def stack_brokers(kafka: KafkaConfig, stack: StackConfig) -> int:
    """How many nodes the local stack runs: the state dir's record, else ``kafka.brokers``."""
    return recorded_brokers(stack.state_dir) or kafka.brokers


def node_ports(stack: StackConfig, node_id: int) -> tuple[int, int]:
    """(client port, controller port) of node ``node_id`` (1-based)."""
    shift = stack.kafka_node_port_step * (node_id - 1)
    return stack.kafka_port + shift, stack.kafka_controller_port + shift


def node_addresses(kafka: KafkaConfig, stack: StackConfig, brokers: int | None = None) -> list[str]:
    """host:port of each node's client listener."""
    n = brokers or stack_brokers(kafka, stack)
    return [f"{stack.host}:{node_ports(stack, i)[0]}" for i in range(1, n + 1)]


def bootstrap_servers(kafka: KafkaConfig, stack: StackConfig) -> str:
    """``kafka.bootstrap_servers``; the stack's own first address stands for all of its nodes."""
    configured = kafka.bootstrap_servers
    if configured != f"{stack.host}:{stack.kafka_port}":
        return configured
    return ",".join(node_addresses(kafka, stack))


def replication(kafka: KafkaConfig, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers``.

    RF is capped at the brokers there are; min ISR at RF - 1 (at least 1), so acks=all keeps
    working with one replica down: 3 brokers give 3/2, one broker 1/1.
    """
    rf = max(1, min(kafka.replication_factor, brokers))
    return rf, max(1, min(kafka.min_insync_replicas, rf - 1))
