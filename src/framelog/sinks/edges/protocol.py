"""What a framelog edge and its origin shield answer to, and where they keep their files.

The runtime side (the cdn worker's purge and warm, its health probe and its
log reader) and the process manager that renders the nginx configuration
(framelog.stack.nginx) both speak this protocol, so it lives here, in the
runtime package, and the stack imports it; no runtime code imports the stack.
"""
from __future__ import annotations

from pathlib import Path

from framelog.core.config import CdnConfig, StackConfig

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


# The places take the stack's state dir (``config.stack.state_dir``), the shield's address the stack
# section and the cdn section: not the whole Config (issue 12 pt 4).

def edge_dir(state_dir: Path, provider_key: str) -> Path:
    return state_dir / edge_name(provider_key)


def access_log_path(state_dir: Path, provider_key: str) -> Path:
    """Where the edge of ``provider_key`` writes its access log (one JSON object per line)."""
    return edge_dir(state_dir, provider_key) / ACCESS_LOG_NAME


def cache_dir(state_dir: Path, provider_key: str) -> Path:
    return edge_dir(state_dir, provider_key) / "cache"


def shield_dir(state_dir: Path) -> Path:
    return state_dir / SHIELD_NAME


def shield_address(stack: StackConfig, cdn: CdnConfig) -> str:
    """Where the edges (and the cdn worker's purges) reach the origin shield."""
    return f"{stack.host}:{cdn.shield.shield_port}"
