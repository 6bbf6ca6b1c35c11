"""``framelog edge serve``: one CDN edge (or, with ``--shield``, the origin shield) in the foreground,
as a container runs it.

The same nginx configuration as the local stack's edges (stack/nginx.py
renders both), from framelog.yaml plus the environment: the origin is
``object_storage.endpoint_url`` (FRAMELOG_S3_ENDPOINT), the signing keys
derive from the token secret (FRAMELOG_TOKEN_SECRET, else the state dir's
secret file), the port is the provider's ``edge_port``, and the cache and the
access log live under ``<state>/edge-<provider>/`` (``<state>/origin-shield/``)
(FRAMELOG_STATE_DIR), where the cdn worker reads them for wildcard purges and
metrics. An edge fetches from the shield at ``stack.host:origin_shield.shield_port``.

Before handing the process over to nginx it puts the edges' read statement in
the bucket policy (waiting, up to ``stack.startup_timeout``, for the origin and
its bucket), because without it every origin fetch is refused.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn

from framelog.core.config import Config
from framelog.stack.nginx import Edge, NginxCache, OriginShield, allow_edge_reads
from framelog.stack.process import StackError, wait_until

ORIGIN_RETRY_INTERVAL = 1.0     # seconds between attempts while the origin starts


def edge_for(config: Config, provider_key: str, listen_host: str | None) -> Edge:
    if provider_key not in config.cdn.providers:
        raise StackError(f"edge-{provider_key}", f"no such provider in cdn_strategy; configured: "
                                                 f"{', '.join(config.cdn.providers)}")
    return Edge(config, provider_key, listen_host=listen_host)


def wait_for_origin_policy(config: Config, edge: NginxCache, timeout: float) -> None:
    """Put the edges' bucket-policy statement, retrying until the origin and the bucket answer."""
    last_error: list[Exception] = []

    def put_policy() -> bool:
        try:
            allow_edge_reads(config)
            return True
        except Exception as exc:  # noqa: BLE001 - origin not up, bucket not created yet: retry until the deadline
            last_error[:] = [exc]
            return False

    if not wait_until(put_policy, timeout, interval=ORIGIN_RETRY_INTERVAL):
        raise StackError(edge.name, f"could not set the origin's read policy on {config.object_storage.endpoint_url} "
                                    f"bucket {config.object_storage.bucket} within {timeout:.0f}s: "
                                    f"{last_error[0] if last_error else 'no answer'}")


def serve(config: Config, provider_key: str | None, *, listen_host: str | None = None) -> NoReturn:
    """Render the edge's (``provider_key`` None: the shield's) nginx.conf, set the origin policy, then exec
    nginx (never returns)."""
    edge = OriginShield(config, listen_host) if provider_key is None else edge_for(config, provider_key, listen_host)
    edge.dir.mkdir(parents=True, exist_ok=True)
    edge.prepare()
    wait_for_origin_policy(config, edge, config.stack.startup_timeout)
    argv = edge.command()
    print(f"{edge.name}: nginx on {listen_host or config.stack.host}:{edge.port}, origin "
          f"{config.object_storage.endpoint_url}, config {edge.conf_path}", file=sys.stderr, flush=True)
    os.execv(argv[0], argv)
