"""Prometheus metrics of storage tiering, with the seed's names and labels (framelog.yaml monitoring_metrics).

storage_utilization{tier, region}: bytes stored per tier; storage_costs{tier, region}:
those bytes times the tier's configured price per GB-month (a monthly figure);
both set from the tiering table after every evaluation. access_patterns{tier,
access_type}: playback events per tier of the rendition played and event type
(view_start, progress, ...), plus restore_request.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from framelog.core.config import MetricSpec, TieringConfig
from framelog.processors.tier_ledger import RenditionRecord
from framelog.processors.tiering import monthly_cost_by_tier


class TieringMetrics:
    def __init__(self, tiering: TieringConfig, metrics: Mapping[str, MetricSpec], region: str,
                 registry: CollectorRegistry = REGISTRY):
        """``tiering``: the tiers and their prices (``config.tiering``); ``metrics``: the label names
        (``config.metrics``); ``region``: the storage's (``config.object_storage.region``)."""
        self.tiering = tiering
        self.region = region
        labels = {n: list(metrics[n].labels) for n in ("storage_utilization", "storage_costs", "access_patterns")}
        self.utilization = Gauge("storage_utilization", "Bytes stored per storage tier",
                                 labels["storage_utilization"], registry=registry)
        self.costs = Gauge("storage_costs", "Monthly storage cost per tier (bytes x price per GB-month)",
                           labels["storage_costs"], registry=registry)
        self.accesses = Counter("access_patterns", "Playback accesses by tier and access type",
                                labels["access_patterns"], registry=registry)

    def observe_storage(self, records: Iterable[RenditionRecord | None]) -> dict[str, int]:
        """Set utilization and cost per tier from the renditions this worker owns; returns bytes per tier."""
        by_tier = {name: 0 for name in self.tiering.tiers}
        for r in records:
            if r is not None and r.published:
                by_tier[r.tier] = by_tier.get(r.tier, 0) + r.size_bytes
        for name, cost in monthly_cost_by_tier(by_tier, self.tiering).items():
            self.utilization.labels(tier=name, region=self.region).set(by_tier[name])
            self.costs.labels(tier=name, region=self.region).set(cost)
        return by_tier

    def observe_accesses(self, accesses: Iterable[tuple[str, str]]) -> None:
        for tier, access_type in accesses:
            self.accesses.labels(tier=tier, access_type=access_type).inc()
