"""What ``framelog stack up|down|status`` runs: print human-readable lines, return an exit code."""
from __future__ import annotations

import sys

from framelog.core.config import Config, get_config
from framelog.stack.manager import Stack
from framelog.stack.process import StackError


def _print(line: str) -> None:
    print(line, flush=True)


def stack_up(config: Config | None = None, brokers: int | None = None) -> int:
    """Start (or reuse) the stack (``brokers`` Kafka nodes). 0 when everything is healthy, 1 on failure."""
    try:
        Stack(config or get_config(), brokers=brokers).up(report=_print)
    except StackError as exc:
        print(f"stack up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def stack_down(config: Config | None = None) -> int:
    """Stop the stack, keeping its data. 0 when everything stopped, 1 otherwise."""
    try:
        Stack(config or get_config()).down(report=_print)
    except StackError as exc:
        print(f"stack down failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def stack_status(config: Config | None = None) -> int:
    """Print each component's state. 0 when Kafka and SeaweedFS run healthy, 3 otherwise."""
    stack = Stack(config or get_config())
    print(f"state dir {stack.state_dir}")
    status = stack.status()
    for name, s in status.items():
        pid = f"pid {s['pid']}" if s.get("pid") else "pid -"
        extra = f"; bucket {s['bucket']}" if s.get("bucket") else ""
        if name == "clickhouse":
            where = f"{s['address']}"
            print(f"{name:<10} {s['state']:<9} {pid:<10} {where}")
        else:
            print(f"{name:<10} {s['state']:<9} {pid:<10} {s['address']}{extra}; log {s['log']}")
    ok = all(status[n]["healthy"] for n in (*(k.name for k in stack.kafka_nodes), "seaweed"))
    return 0 if ok else 3
