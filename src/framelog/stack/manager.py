"""``Stack``: the embedded local stack as one object (Kafka, SeaweedFS, chdb, the origin shield, the nginx edges).

    stack = Stack(config)
    stack.up()        # starts what is not running, waits for health, reuses what is
    stack.status()    # {"kafka": {...}, "seaweed": {...}, "clickhouse": {...}}
    stack.down()      # SIGTERM, wait with a deadline, then SIGKILL; data is kept

Tests reach the processes through ``stack.kafka`` (node 1), ``stack.kafka_nodes`` (every node of a
multi-broker stack) and ``stack.seaweed`` (``start``, ``stop``, ``kill9``, ``is_running``, ``wait_healthy``).
"""
from __future__ import annotations

import time
from collections.abc import Callable

from framelog.core.config import Config, get_config
from framelog.core.kafka_nodes import recorded_brokers
from framelog.stack.clickhouse import ClickHouse
from framelog.stack.kafka import Kafka, finish_cluster_stop
from framelog.stack.nginx import Edge, OriginShield, edges
from framelog.stack.process import STOP_TIMEOUT, Component, StackError
from framelog.stack.seaweed import Seaweed

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Stack:
    def __init__(self, config: Config | None = None, brokers: int | None = None):
        """``brokers``: the Kafka nodes to run (default: what the state dir was formatted with, else
        ``kafka.brokers``). A state dir formatted for another count is refused at ``up``."""
        self.config = config or get_config()
        self.state_dir = self.config.stack.state_dir
        self.recorded_brokers = recorded_brokers(self.state_dir)
        self.brokers = brokers or self.recorded_brokers or self.config.kafka.brokers
        # down/status also see nodes of a larger recorded cluster, so nothing is left running
        known = max(self.brokers, self.recorded_brokers or 0)
        self.kafka_nodes = [Kafka(self.config, i, self.brokers) for i in range(1, known + 1)]
        self.kafka = self.kafka_nodes[0]
        self.seaweed = Seaweed(self.config)
        self.clickhouse = ClickHouse(self.config)
        self.shield = OriginShield(self.config)       # after seaweed: the shield sets the origin's read policy
        self.edges: list[Edge] = edges(self.config)   # in front of the shield

    @property
    def processes(self) -> list[Component]:
        return [*self.kafka_nodes, self.seaweed, self.shield, *self.edges]

    def _check_brokers(self) -> None:
        if self.recorded_brokers is not None and self.recorded_brokers != self.brokers:
            raise StackError("kafka", f"the state dir {self.state_dir} holds a cluster of {self.recorded_brokers} "
                                      f"broker(s), not {self.brokers}: a KRaft quorum keeps its shape; use another "
                                      "state dir (--state-dir) for another shape")
        if self.recorded_brokers is None and self.brokers > 1 and self.kafka.is_formatted():
            raise StackError("kafka", f"the state dir {self.state_dir} holds a single-broker cluster; "
                                      f"{self.brokers} brokers need a fresh state dir (--state-dir)")

    def up(self, report: Report = _quiet, timeout: float | None = None) -> dict[str, str]:
        """Start every component not yet running (in parallel), wait until all are healthy.

        Returns {component: what happened}. Raises StackError naming the first
        component that failed, with its log file and the log's last lines.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._check_brokers()
        t0 = time.monotonic()
        launched: dict[str, bool] = {}
        outcome: dict[str, str] = {}
        for c in self.processes:  # spawn all first, so their start-up times overlap
            launched[c.name] = c.launch()
        for c in self.processes:
            outcome[c.name] = c.finish_start(launched[c.name], timeout)
            report(f"{c.name:<10} {outcome[c.name]}; {c.address}; log {c.log_path}")
        outcome["clickhouse"] = self.clickhouse.up()
        report(f"{'clickhouse':<10} {outcome['clickhouse']}; {self.clickhouse.address}")
        report(f"stack up in {time.monotonic() - t0:.1f}s; state dir {self.state_dir}")
        return outcome

    def down(self, report: Report = _quiet, timeout: float = STOP_TIMEOUT) -> dict[str, str]:
        """Stop every running process: SIGTERM to all, wait up to ``timeout``, then SIGKILL."""
        outcome: dict[str, str] = {}
        pids = {}
        for c in self.processes:
            pids[c.name] = c.request_stop()
        errors = []
        try:   # the Kafka nodes together: a node can only stop cleanly while a quorum of them lives
            outcome.update(finish_cluster_stop(self.kafka_nodes, pids, timeout))
        except StackError as exc:
            errors.append(exc)
            outcome.update({n.name: f"failed: {exc.what}" for n in self.kafka_nodes})
        for c in self.processes[len(self.kafka_nodes):]:
            pid = pids[c.name]
            try:
                outcome[c.name] = "not running" if pid is None else c._finish_stop(pid, timeout)
            except StackError as exc:
                errors.append(exc)
                outcome[c.name] = f"failed: {exc.what}"
        for c in self.processes:
            report(f"{c.name:<10} {outcome[c.name]}")
        outcome["clickhouse"] = self.clickhouse.down()
        report(f"{'clickhouse':<10} {outcome['clickhouse']}")
        if errors:
            raise errors[0]
        return outcome

    def status(self) -> dict[str, dict]:
        return {c.name: c.status() for c in (*self.kafka_nodes, self.seaweed, self.shield, *self.edges,
                                             self.clickhouse)}

    def is_running(self) -> bool:
        return all(c.is_running() for c in self.processes)
