"""The edges' and the origin shield's access logs: one JSON object per request
(stack/nginx.py's ``framelog_edge`` format).

``parse_line`` turns a line into an ``EdgeRequest``; ``LogFollower`` reads the
lines appended to a log since the last call, surviving rotation and
truncation. What the numbers mean (for the seed's CDN metrics):

* ``cache``: nginx's ``$upstream_cache_status`` — HIT, STALE, UPDATING and
  REVALIDATED were served from the cache; MISS, EXPIRED and BYPASS went to
  the origin; empty for refused requests and purges.
* ``bytes``: ``$bytes_sent`` (headers and body) — bandwidth.
* ``request_time``: seconds from the first byte read to the last byte sent.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from framelog.processors import cache_control as cc
from framelog.processors.edge_signing import parse_object_path

CACHE_HITS = frozenset({"HIT", "STALE", "UPDATING", "REVALIDATED"})
CACHE_MISSES = frozenset({"MISS", "EXPIRED", "BYPASS"})
OTHER_CONTENT = "other"
INTERNAL_PREFIX = "/_edge/"       # where stack/nginx.py rewrites a verified request
MAX_READ_BYTES = 8 * 2**20        # per poll: a burst is read over several polls


@dataclass(frozen=True)
class EdgeRequest:
    method: str
    path: str
    status: int
    cache: str               # upstream_cache_status ("" when the cache was not consulted)
    bytes_sent: int
    request_time: float
    object_path: str | None  # "/hls/<id>/…" for a served object, else None (refused, purge, …)

    @property
    def cache_hit(self) -> bool | None:
        """True (hit), False (miss) or None (the cache was not asked: refused, purge, error)."""
        if self.cache in CACHE_HITS:
            return True
        if self.cache in CACHE_MISSES:
            return False
        return None

    @property
    def content_type(self) -> str:
        """The caching_rules file type of the object (hls_playlists, hls_segments, thumbnails, …) or 'other'."""
        if self.object_path is None:
            return OTHER_CONTENT
        return cc.file_type_for_key(self.object_path.lstrip("/")) or OTHER_CONTENT


def _object_path(path: str) -> str | None:
    """The object key an edge (``/_edge/<key>``) or the origin shield (``/<key>``) logged, if any."""
    candidate = path[len(INTERNAL_PREFIX) - 1:] if path.startswith(INTERNAL_PREFIX) else path
    try:
        parse_object_path(candidate)
    except ValueError:
        return None
    return candidate


def parse_line(line: str | bytes) -> EdgeRequest | None:
    """One access-log line, or None if it is not a complete record of the edge's format."""
    try:
        d = json.loads(line)
        path = str(d["path"])
        return EdgeRequest(method=str(d["method"]), path=path, status=int(d["status"]), cache=str(d.get("cache", "")),
                           bytes_sent=int(d["bytes"]), request_time=float(d["request_time"]),
                           object_path=_object_path(path))
    except (ValueError, KeyError, TypeError):
        return None


class LogFollower:
    """Reads whole lines appended to one log file since the previous ``read``.

    ``from_start=False`` skips what the file held when the follower was made
    (metrics describe traffic since the exporter started). A new inode
    (rotation) or a shorter file (truncation) restarts at the beginning.
    """

    def __init__(self, path: Path, *, from_start: bool = False):
        self.path = Path(path)
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""
        if not from_start:
            try:
                st = os.stat(self.path)
                self._inode, self._offset = st.st_ino, st.st_size
            except FileNotFoundError:
                pass

    def read(self) -> list[bytes]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if st.st_ino != self._inode or st.st_size < self._offset:
            self._inode, self._offset, self._partial = st.st_ino, 0, b""
        if st.st_size == self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(MAX_READ_BYTES)
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()        # an unfinished last line waits for the next read
        return [line for line in lines if line.strip()]
