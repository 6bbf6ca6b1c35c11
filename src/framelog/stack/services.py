"""framelog's own long-running processes, managed like the stack's components.

The demo (and a single-machine install) runs the pipeline worker supervisor
and the HTTP API as detached processes with pid files and logs in the state
directory, reusing the Component lifecycle of the stack.
"""
from __future__ import annotations

import os
import sys
import urllib.request

from framelog.core.config import Config
from framelog.stack.process import Component

EMBEDDED_SINK_ENV = "FRAMELOG_API_EMBEDDED_SINK"     # api/analytics_engine.py reads it


class _FramelogProcess(Component):
    subcommand: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "framelog.cli.main", "--state-dir", str(self.state_dir), *self.subcommand]

    @property
    def marker(self) -> str:
        return f"--state-dir {self.state_dir} {' '.join(self.subcommand)}"


class WorkerService(_FramelogProcess):
    """`framelog worker`: the intake agent and every pipeline stage, one child process each."""

    name = "worker"
    subcommand = ("worker",)

    @property
    def address(self) -> str:
        return f"consumer groups framelog-* on {self.config.kafka.bootstrap_servers}"

    def ports(self) -> list[tuple[str, int]]:
        return []

    def check_health(self) -> None:
        """Healthy once every group (intake and each stage) has a member and is stable."""
        from confluent_kafka import ConsumerGroupState

        from framelog.pipeline.worker import groups
        from framelog.streams.admin import admin_client

        names = [f"framelog-{g}" for g in groups(self.config.pipeline)]
        # keep a reference: futures die with their client
        admin = admin_client(self.config.kafka, self.config.stack)
        futures = admin.describe_consumer_groups(names, request_timeout=5)
        for name, fut in futures.items():
            desc = fut.result(timeout=10)
            if desc.state != ConsumerGroupState.STABLE or not desc.members:
                raise RuntimeError(f"group {name} is {desc.state.name.lower()} with {len(desc.members)} member(s)")


class ApiService(_FramelogProcess):
    """`framelog api`: upload, status, playback events, analytics, stream URLs and keys.

    ``embedded_sink``: None follows the environment (with the embedded engine the API hosts the
    analytics sink); False starts it with the sink left to a :class:`SinkService` of its own.
    """

    name = "api"
    subcommand = ("api",)

    def __init__(self, config: Config, *, embedded_sink: bool | None = None):
        super().__init__(config)
        self.embedded_sink = embedded_sink

    def env(self) -> dict[str, str] | None:
        if self.embedded_sink is None:
            return None
        return {**os.environ, EMBEDDED_SINK_ENV: "1" if self.embedded_sink else "0"}

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.config.stack.api_port}"

    def ports(self) -> list[tuple[str, int]]:
        return [("api", self.config.stack.api_port), ("api operator listener", self.config.ops_port)]

    def check_health(self) -> None:
        with urllib.request.urlopen(f"{self.address}/healthz", timeout=2) as resp:
            if resp.status != 200:
                raise RuntimeError(f"/healthz answered {resp.status}")


class SinkService(_FramelogProcess):
    """`framelog sink analytics` as a process of its own (the API started with ``embedded_sink=False``).

    With the embedded engine it owns the ClickHouse data directory, so the API
    does not open it (no analytics routes) while this runs.
    """

    name = "sink"
    subcommand = ("sink", "analytics")

    @property
    def address(self) -> str:
        return f"consumer group framelog-analytics-sink into {self.config.clickhouse_dsn}"

    def ports(self) -> list[tuple[str, int]]:
        from framelog.sinks.clickhouse.runner import metrics_port

        return [("sink metrics", metrics_port(self.config.stack, self.config.pipeline))]

    def check_health(self) -> None:
        from framelog.ops.healthcheck import check, health_url

        problem = check(health_url(self.config, "sink"), timeout=2)
        if problem:
            raise RuntimeError(problem)
