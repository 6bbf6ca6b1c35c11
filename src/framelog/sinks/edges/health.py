"""Is each edge up? A short probe of every edge's ``/healthz``, remembered a few seconds.

The stream API asks on every request which edges are healthy
(``processors.cdn_routing.stream_urls(..., healthy=...)``); probing each time
would add a round trip per edge to every request, and a dead edge must not
stall requests for long, hence the short timeout and the short memory.

    health = EdgeHealth(config.cdn, config.stack.host)
    health.healthy()                  # {"primary_cdn": True, "secondary_cdn": False}
    stream_urls(vid, country, config.cdn, config.stack.host, qualities, healthy=health.is_healthy)
"""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from framelog.core.config import CdnConfig
from framelog.processors.cdn_routing import edge_base_url
from framelog.sinks.edges.protocol import HEALTH_PATH

PROBE_TIMEOUT = 0.5     # seconds; the edges are local stand-ins, a healthy one answers in ~1 ms
CACHE_SECONDS = 2.0     # how long one round of probes is believed


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when ``url`` answers 200 within ``timeout``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class EdgeHealth:
    """Health of every configured edge, probed at most once per ``cache_seconds`` (thread-safe)."""

    def __init__(self, cdn: CdnConfig, host: str, *, timeout: float = PROBE_TIMEOUT,
                 cache_seconds: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        """``cdn``: ``config.cdn`` (the providers); ``host``: ``config.stack.host`` (where the edges listen)."""
        self.urls = {key: f"{edge_base_url(key, cdn, host)}{HEALTH_PATH}" for key in cdn.providers}
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._last: dict[str, bool] = {}

    def healthy(self) -> dict[str, bool]:
        """{provider key: up?}, from a probe no older than ``cache_seconds``."""
        with self._lock:
            now = self.clock()
            if self._checked_at is None or now - self._checked_at >= self.cache_seconds:
                with ThreadPoolExecutor(max_workers=len(self.urls) or 1) as pool:   # one timeout, not one per edge
                    results = pool.map(lambda url: probe(url, self.timeout), self.urls.values())
                    self._last = dict(zip(self.urls, results))
                self._checked_at = self.clock()
            return dict(self._last)

    def is_healthy(self, provider_key: str) -> bool:
        """Predicate form for ``cdn_routing.route``/``stream_urls``; unknown providers count as down."""
        return self.healthy().get(provider_key, False)

    def invalidate(self) -> None:
        """Forget the last probe (the next call probes again)."""
        with self._lock:
            self._checked_at = None
