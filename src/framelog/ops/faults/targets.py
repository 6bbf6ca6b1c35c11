"""What the fault suite can kill: each target knows its processes, how to kill -9 them and when it is back.

Names (``framelog faults run --targets``): ``broker`` (Kafka), ``s3``
(SeaweedFS), ``edge`` (the primary nginx edge), ``api`` (the HTTP API, started
without the embedded analytics sink), ``sink`` (``framelog sink analytics`` as
a process of its own, owning the embedded ClickHouse engine), and
``worker:<group>`` for every consumer group of ``framelog worker`` (intake,
the six stages, cdn, tiering, popularity, webhooks). A component of the stack is killed with its whole process group
(an nginx master and its workers, a JVM) and started again as ``stack up``
does; a worker group's process is killed and its supervisor starts it again.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from framelog.core.config import Config
from framelog.pipeline.worker import groups
from framelog.stack.manager import Stack
from framelog.stack.process import Component, pid_alive, wait_until
from framelog.stack.services import ApiService, SinkService

WORKER_PREFIX = "worker:"
KILL_WAIT = 15.0


def processes_with(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (words joined by spaces)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return sorted(pids)


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Target:
    """One thing to kill: a stack component or a worker group's process."""

    name: str
    component: Component | None = None            # a stack component or the API service
    marker: str | None = None                      # a worker group: its process's command line
    config: Config | None = field(default=None, repr=False)

    def pids(self) -> list[int]:
        if self.component is not None:
            pid = self.component.pid()
            return [pid] if pid is not None else []
        assert self.marker is not None
        return processes_with(self.marker)

    def kill(self) -> list[int]:
        """SIGKILL the target's processes (a component with its process group); wait until they are gone."""
        victims = self.pids()
        for pid in victims:
            try:
                if self.component is not None:
                    os.killpg(pid, signal.SIGKILL)      # launched with start_new_session: pgid == pid
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not wait_until(lambda: not any(pid_alive(p) for p in victims), KILL_WAIT):
            raise RuntimeError(f"{self.name}: {victims} survived SIGKILL")
        return victims

    def restart(self, timeout: float) -> None:
        """Start it again and wait up to ``timeout`` for health (a worker group's supervisor restarts it).

        The wait is the fault run's, not the stack's start-up timeout: a broker
        recovering every partition after kill -9 on a busy machine takes longer
        than a clean start, and giving up would stop it half-way.
        """
        if self.component is not None:
            self.component.start(timeout=timeout)

    def healthy(self) -> bool:
        if self.component is not None:
            return self.component.is_running() and self.component.is_healthy()
        return bool(self.pids())


def all_targets(config: Config) -> dict[str, Target]:
    """Every target the suite knows, by name."""
    stack = Stack(config)
    out = {"broker": Target("broker", component=stack.kafka),
           "s3": Target("s3", component=stack.seaweed),
           "edge": Target("edge", component=stack.edges[0]),
           "api": Target("api", component=ApiService(config, embedded_sink=False)),
           "sink": Target("sink", component=SinkService(config))}
    for group in groups(config.pipeline):
        # the trailing space: the command line ends there, so "cdn" does not match "cdn_upload"
        marker = f"--state-dir {config.stack.state_dir} worker --stage {group} "
        out[f"{WORKER_PREFIX}{group}"] = Target(f"{WORKER_PREFIX}{group}", config=config, marker=marker)
    return out


def wait_back(target: Target, timeout: float) -> float | None:
    """Seconds until ``target`` is healthy again (None past ``timeout``)."""
    t0 = time.monotonic()
    if wait_until(target.healthy, timeout):
        return time.monotonic() - t0
    return None
