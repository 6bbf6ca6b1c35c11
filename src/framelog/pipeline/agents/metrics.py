"""Prometheus metrics of the pipeline, with the seed's names and labels (framelog.yaml monitoring_metrics).

processing_duration and processing_errors are observed by the stage runner in
each worker process; processing_queue_size (consumer lag per stage) is
measured from the broker on scrape, so any process can export it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from framelog.core.config import StreamsConfig, get_config


def _labels(name: str) -> list[str]:
    return list(get_config().metrics[name].labels)


PROCESSING_DURATION = Histogram("processing_duration", "Video processing duration (seconds)",
                                _labels("processing_duration"),
                                buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600))
PROCESSING_ERRORS = Counter("processing_errors", "Processing errors by type", _labels("processing_errors"))


def observe_stage(stage: str, seconds: float, outputs: Mapping[str, str],
                  inputs: Mapping[str, str] | None = None) -> None:
    """``profile``: the rungs the stage made or kept; ``resolution``: the source's displayed
    size (validation measures it, later stages carry it in their inputs)."""
    profile = outputs.get("renditions", outputs.get("kept_renditions", "")) or "-"
    known = outputs if "width" in outputs else (inputs or {})
    resolution = f"{known['width']}x{known['height']}" if "width" in known and "height" in known else "-"
    PROCESSING_DURATION.labels(stage=stage, profile=profile, resolution=resolution).observe(seconds)


def observe_error(stage: str, error_type: str) -> None:
    PROCESSING_ERRORS.labels(stage=stage, error_type=error_type).inc()


class QueueSizeCollector(Collector):
    """processing_queue_size{priority, stage}: records not yet committed by each stage's group, per priority topic."""

    def __init__(self, streams: StreamsConfig):
        """``streams``: the broker to ask (kafka, stack) and the stages' request topics (topics: the pipeline's
        stages, the priority levels), ``config.streams``."""
        self.streams = streams

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from framelog.streams.lag import group_lag
        from framelog.streams.topics import stage_topics

        family = GaugeMetricFamily("processing_queue_size", "Processing queue size (consumer lag)",
                                   labels=_labels("processing_queue_size"))
        kafka, stack, registry = self.streams.kafka, self.streams.stack, self.streams.topics
        for stage in registry.pipeline.stage_names:
            for priority, topic in stage_topics(registry.priorities, stage):
                try:
                    lag = group_lag(kafka, stack, f"framelog-{stage}", topic)
                except Exception:    # broker unreachable: report nothing rather than a wrong zero
                    continue
                family.add_metric([priority, stage], lag)
        yield family


def register_queue_size(streams: StreamsConfig) -> None:
    """Export processing_queue_size from this process (``config.streams``)."""
    REGISTRY.register(QueueSizeCollector(streams))
