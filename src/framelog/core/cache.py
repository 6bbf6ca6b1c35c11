"""An in-process cache level of the seed's caching strategy: entries live for a TTL and are
dropped early by the events that change them.

The seed names four levels (edge, origin, application, database); the first two are nginx
(stack/nginx.py). This is the other two inside a framelog process: each entry carries tags
(e.g. a video id), and whoever learns that something changed invalidates its tag, so a
cached answer is never older than the last change it depends on, and never older than the
TTL. Hits and misses are counted per cache for Prometheus.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Gauge

from framelog.core.config import CachingStrategy

V = TypeVar("V")

REQUESTS = Counter("framelog_cache_requests_total", "Lookups in framelog's in-process cache levels",
                   ["cache", "level", "result"])
HIT_RATIO = Gauge("framelog_cache_hit_ratio", "Hits / lookups since the process started", ["cache", "level"])
INVALIDATIONS = Counter("framelog_cache_invalidations_total", "Entries dropped because what they depend on changed",
                        ["cache", "level"])


def level_ttl(caching: CachingStrategy, level: str) -> float:
    """The TTL of a named level of ``caching_strategy.levels`` (``config.caching``; KeyError naming the known ones)."""
    for entry in caching.levels:
        if entry.name == level:
            return entry.ttl
    raise KeyError(f"caching_strategy.levels has no level {level!r}; "
                   f"known: {[e.name for e in caching.levels]}")


@dataclass
class _Entry(Generic[V]):
    value: V
    expires: float
    tags: frozenset[str]


class TaggedTtlCache(Generic[V]):
    """A bounded, thread-safe TTL cache whose entries can be invalidated by tag."""

    def __init__(self, name: str, level: str, ttl: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.name, self.level, self.ttl, self.max_entries, self.clock = name, level, ttl, max_entries, clock
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self._by_tag: dict[str, set[Hashable]] = {}
        self._generations: dict[str, int] = {}      # invalidations seen per tag (for get_or_compute)
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        REQUESTS.labels(self.name, self.level, "hit" if hit else "miss").inc()
        HIT_RATIO.labels(self.name, self.level).set(self.hits / (self.hits + self.misses))

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            for tag in entry.tags:
                keys = self._by_tag.get(tag)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_tag[tag]

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires <= self.clock():
                self._drop(key)
                entry = None
            if entry is not None:
                self._entries.move_to_end(key)
            self._count(entry is not None)
            return None if entry is None else entry.value

    def put(self, key: Hashable, value: V, tags: Iterable[str] = ()) -> None:
        with self._lock:
            self._drop(key)
            entry = _Entry(value, self.clock() + self.ttl, frozenset(tags))
            self._entries[key] = entry
            for tag in entry.tags:
                self._by_tag.setdefault(tag, set()).add(key)
            while len(self._entries) > self.max_entries:
                self._drop(next(iter(self._entries)))

    def invalidate(self, tags: Iterable[str]) -> int:
        """Drop every entry carrying one of ``tags``; returns how many went."""
        dropped = 0
        with self._lock:
            for tag in tags:
                self._generations[tag] = self._generations.get(tag, 0) + 1
                for key in list(self._by_tag.get(tag, ())):
                    self._drop(key)
                    dropped += 1
        if dropped:
            INVALIDATIONS.labels(self.name, self.level).inc(dropped)
        return dropped

    def get_or_compute(self, key: Hashable, compute: Callable[[], V], tags: Iterable[str] = ()) -> V:
        """The cached value, or ``compute()`` stored under ``tags``.

        A change invalidated while ``compute`` ran is not lost: the value is
        stored only if no invalidation of its tags happened meanwhile.
        """
        found = self.get(key)
        if found is not None:
            return found
        tags = frozenset(tags)
        with self._lock:
            generation = self._generation(tags)
        value = compute()
        with self._lock:
            changed = self._generation(tags) != generation
        if not changed:
            self.put(key, value, tags)
        return value

    def _generation(self, tags: frozenset[str]) -> tuple[int, ...]:
        return tuple(self._generations.get(t, 0) for t in sorted(tags))


def analytics_query_cache(caching: CachingStrategy) -> TaggedTtlCache[Any]:
    """The seed's "Database Cache" level (query results, 15 m): get_video_analytics answers by video."""
    return TaggedTtlCache("analytics_query", "Database Cache", level_ttl(caching, "Database Cache"))


def application_cache(caching: CachingStrategy, name: str) -> TaggedTtlCache[Any]:
    """The seed's "Application Cache" level (metadata, 1 h)."""
    return TaggedTtlCache(name, "Application Cache", level_ttl(caching, "Application Cache"))
