"""``framelog healthcheck``: is this container's framelog process answering? (compose healthchecks)

Each kind of process is asked on the listener it already has, over loopback, so the check needs no
credentials and no extra port: the API and the edges on ``/healthz``, a worker group and the analytics
sink on their Prometheus ``/metrics`` (served from the process itself, on ``stack.metrics_host``).
Exit status 0 when it answers 200 within the timeout, 1 otherwise (with the reason on stderr).
"""
from __future__ import annotations

import sys
import urllib.request

from framelog.core.config import Config

LOOPBACK = "127.0.0.1"
HEALTH_PATH = "/healthz"


def health_url(config: Config, kind: str, *, stage: str | None = None, provider: str | None = None,
               port: int | None = None) -> str:
    """The URL that answers 200 while the process of ``kind`` (api, worker, sink, edge, shield) is up."""
    if kind == "api":
        return f"http://{LOOPBACK}:{port or config.stack.api_port}{HEALTH_PATH}"
    if kind == "worker":
        from framelog.pipeline.worker import groups

        known = groups(config.pipeline)
        if stage not in known:
            raise ValueError(f"unknown stage {stage!r}; known: {', '.join(known)}")
        return f"http://{LOOPBACK}:{port or config.stack.worker_metrics_port + known.index(stage)}/metrics"
    if kind == "sink":
        from framelog.sinks.clickhouse.runner import metrics_port

        return f"http://{LOOPBACK}:{port or metrics_port(config.stack, config.pipeline)}/metrics"
    if kind == "edge":
        if provider not in config.cdn.providers:
            raise ValueError(f"unknown provider {provider!r}; known: {', '.join(config.cdn.providers)}")
        return f"http://{LOOPBACK}:{port or config.cdn.providers[provider].edge_port}{HEALTH_PATH}"
    if kind == "shield":
        return f"http://{LOOPBACK}:{port or config.cdn.shield.shield_port}{HEALTH_PATH}"
    raise ValueError(f"unknown kind {kind!r}")


def check(url: str, timeout: float) -> str | None:
    """None when ``url`` answers 200; else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:     # noqa: S310 - a fixed loopback URL
            return None if response.status == 200 else f"{url} answered {response.status}"
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", reported
        return f"{url}: {exc}"


def run_healthcheck(config: Config, kind: str, *, stage: str | None = None, provider: str | None = None,
                    port: int | None = None, timeout: float = 5.0) -> int:
    try:
        url = health_url(config, kind, stage=stage, provider=provider, port=port)
    except ValueError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 2
    problem = check(url, timeout)
    if problem:
        print(f"healthcheck: {kind} unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0
