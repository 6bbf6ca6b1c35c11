"""What a framelog edge and its origin shield answer to, and where they keep their files.

The runtime side (the cdn worker's purge and warm, its health probe and its
log reader) and the process manager that renders the nginx configuration
(framelog.stack.nginx) both speak this protocol, so it lives here, in the
runtime package, and the stack imports it; no runtime code imports the stack.
"""
from __future__ import annotations

from pathlib import Path

from framelog.core.config import Config

PURGE_HEADER = "X-Framelog-Purge"    # the purge token's header on /_purge requests
HEALTH_PATH = "/healthz"             # 200 while the edge runs
PURGE_PATH = "/_purge"               # /_purge/<object key>: drop one cached object (loopback, token)
INTERNAL_PATH = "/_edge"             # where an edge rewrites a verified signed request (what its log shows)
LOG_FORMAT = "framelog_edge"         # the access log's format name: one JSON object per line
ACCESS_LOG_NAME = "access.log"
SHIELD_NAME = "origin-shield"
SHIELD_CACHE_HEADER = "X-Shield-Cache"     # the shield's cache status, for the edges' logs; viewers never see it


def edge_name(provider_key: str) -> str:
    return f"edge-{provider_key}"


def edge_dir(config: Config, provider_key: str) -> Path:
    return config.stack.state_dir / edge_name(provider_key)


def access_log_path(config: Config, provider_key: str) -> Path:
    """Where the edge of ``provider_key`` writes its access log (one JSON object per line)."""
    return edge_dir(config, provider_key) / ACCESS_LOG_NAME


def cache_dir(config: Config, provider_key: str) -> Path:
    return edge_dir(config, provider_key) / "cache"


def shield_dir(config: Config) -> Path:
    return config.stack.state_dir / SHIELD_NAME


def shield_address(config: Config) -> str:
    """Where the edges (and the cdn worker's purges) reach the origin shield."""
    return f"{config.stack.host}:{config.cdn.shield.shield_port}"
