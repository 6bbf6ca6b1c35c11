"""The seed's CDN metrics (framelog.yaml ``monitoring_metrics``), read from the edges' access logs.

    cdn_cache_hit_ratio{provider, region, content_type}   gauge: hits / (hits + misses) since start
    cdn_bandwidth_usage{provider, region}                  counter: bytes the edge sent
    cdn_response_time{provider, region, edge_location}     histogram: seconds per served object

``provider`` is the cdn_strategy key (primary_cdn, secondary_cdn), ``region``
the provider's first configured region (a local edge stands for one region),
``edge_location`` the edge's host:port, ``content_type`` the caching_rules
file type. The origin shield is counted the same way under
``provider="origin-shield"``, ``region="origin"``: its hit ratio is the
"Origin Cache" level's. ``EdgeLogExporter.poll`` reads what each edge and the
shield logged since the last poll; the cdn worker calls it on a timer.
"""
from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from framelog.core.config import CdnConfig, MetricSpec, StackConfig
from framelog.processors.edge_logs import EdgeRequest, LogFollower, parse_line
from framelog.sinks.edges.protocol import SHIELD_NAME, access_log_path, shield_address, shield_dir

RESPONSE_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class EdgeLabels:
    provider: str
    region: str
    edge_location: str


SHIELD_REGION = "origin"


def shield_labels(stack: StackConfig, cdn: CdnConfig) -> EdgeLabels:
    return EdgeLabels(SHIELD_NAME, SHIELD_REGION, shield_address(stack, cdn))


def edge_labels(stack: StackConfig, cdn: CdnConfig, provider_key: str) -> EdgeLabels:
    """An edge's labels from the stack and cdn sections (``config.stack, config.cdn``)."""
    p = cdn.providers[provider_key]
    return EdgeLabels(provider_key, p.regions[0] if p.regions else "-", f"{stack.host}:{p.edge_port}")


class CdnMetrics:
    """The three metric families, with label names from the configuration."""

    def __init__(self, spec: Mapping[str, MetricSpec], registry: CollectorRegistry = REGISTRY):
        """``spec``: the metrics' label names (``config.metrics``)."""
        self.hit_ratio = Gauge("cdn_cache_hit_ratio", "CDN cache hit ratio",
                               list(spec["cdn_cache_hit_ratio"].labels), registry=registry)
        self.bandwidth = Counter("cdn_bandwidth_usage", "CDN bandwidth usage (bytes sent by the edge)",
                                 list(spec["cdn_bandwidth_usage"].labels), registry=registry)
        self.response_time = Histogram("cdn_response_time", "CDN response time (seconds)",
                                       list(spec["cdn_response_time"].labels), buckets=RESPONSE_TIME_BUCKETS,
                                       registry=registry)
        self._label_names = {name: spec[name].labels for name in
                             ("cdn_cache_hit_ratio", "cdn_bandwidth_usage", "cdn_response_time")}
        self._hits: Tally[tuple[EdgeLabels, str]] = Tally()
        self._lookups: Tally[tuple[EdgeLabels, str]] = Tally()

    def _values(self, metric: str, edge: EdgeLabels, content_type: str = "") -> dict[str, str]:
        known = {"provider": edge.provider, "region": edge.region, "edge_location": edge.edge_location,
                 "content_type": content_type}
        return {name: known.get(name, "-") for name in self._label_names[metric]}

    def observe(self, edge: EdgeLabels, req: EdgeRequest) -> None:
        self.bandwidth.labels(**self._values("cdn_bandwidth_usage", edge)).inc(req.bytes_sent)
        hit = req.cache_hit
        if hit is None:
            return
        self.response_time.labels(**self._values("cdn_response_time", edge)).observe(req.request_time)
        key = (edge, req.content_type)
        self._lookups[key] += 1
        self._hits[key] += int(hit)
        self.hit_ratio.labels(**self._values("cdn_cache_hit_ratio", edge, req.content_type)).set(
            self._hits[key] / self._lookups[key])


class EdgeLogExporter:
    """Follows every edge's (and the origin shield's) access log and feeds ``CdnMetrics``."""

    def __init__(self, stack: StackConfig, cdn: CdnConfig, metrics: CdnMetrics, *, from_start: bool = False,
                 providers: Iterable[str] | None = None):
        """The edges of ``cdn`` whose logs are under ``stack.state_dir`` (``config.stack, config.cdn``)."""
        self.metrics = metrics
        keys = list(providers) if providers is not None else list(cdn.providers)
        state_dir = stack.state_dir
        self.followers = {edge_labels(stack, cdn, k):
                          LogFollower(access_log_path(state_dir, k), from_start=from_start) for k in keys}
        if providers is None:           # every edge: the shield behind them too
            self.followers[shield_labels(stack, cdn)] = LogFollower(shield_dir(state_dir) / "access.log",
                                                                    from_start=from_start)

    def poll(self) -> int:
        """Read and account every new log line; returns how many requests were counted."""
        counted = 0
        for edge, follower in self.followers.items():
            for line in follower.read():
                req = parse_line(line)
                if req is not None:
                    self.metrics.observe(edge, req)
                    counted += 1
        return counted
