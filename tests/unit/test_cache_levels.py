"""The in-process cache levels: TTL, tag invalidation, no stale value stored across a change, metrics."""
from __future__ import annotations

from prometheus_client import REGISTRY

from framelog.core.cache import TaggedTtlCache, analytics_query_cache, level_ttl
from framelog.core.config import get_config


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_entries_live_for_the_ttl_and_go_with_their_tag():
    clock = Clock()
    c = TaggedTtlCache("t1", "Database Cache", ttl=10, clock=clock)
    c.put(("v1", None), {"views": 1}, tags=["v1"])
    c.put(("v2", None), {"views": 2}, tags=["v2"])
    assert c.get(("v1", None)) == {"views": 1}
    clock.t = 9.9
    assert c.get(("v2", None)) == {"views": 2}
    assert c.invalidate(["v1"]) == 1 and c.get(("v1", None)) is None
    clock.t = 10.0
    assert c.get(("v2", None)) is None                       # expired
    assert (c.hits, c.misses) == (2, 2)
    assert REGISTRY.get_sample_value("framelog_cache_hit_ratio", {"cache": "t1", "level": "Database Cache"}) == 0.5


def test_a_change_during_the_computation_is_not_cached():
    c = TaggedTtlCache("t2", "Database Cache", ttl=60, clock=Clock())

    def compute():
        c.invalidate(["v1"])                                   # new events land while the query runs
        return "old answer"
    assert c.get_or_compute("k", compute, tags=["v1"]) == "old answer"
    assert c.get("k") is None
    assert c.get_or_compute("k", lambda: "new answer", tags=["v1"]) == "new answer"
    assert c.get("k") == "new answer"


def test_bounded():
    c = TaggedTtlCache("t3", "Database Cache", ttl=60, max_entries=2, clock=Clock())
    for i in range(3):
        c.put(i, i, tags=[f"v{i}"])
    assert c.get(0) is None and c.get(2) == 2


def test_levels_come_from_the_seeds_caching_strategy():
    config = get_config()
    assert level_ttl(config.caching, "Database Cache") == 15 * 60
    assert level_ttl(config.caching, "Application Cache") == 3600
    assert analytics_query_cache(config.caching).ttl == 15 * 60
