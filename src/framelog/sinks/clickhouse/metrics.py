"""Prometheus metrics of the analytics sink.

* ``framelog_playback_events_total{type}`` and ``video_{views,shares,likes}_total``:
  events *written* to ClickHouse (after the event_id filter), so a client retry
  is counted once, as in the rollups; ``rate()`` of the first is the ingest rate.
* ``framelog_analytics_insert_seconds{table}``: latency of one insert (one
  partition's batch, rollup views included).
* ``framelog_analytics_sink_lag_records{topic,partition}``: records in the
  partition after the committed offset (the high watermark the consumer last
  saw minus the commit), refreshed every poll, so it grows while the sink
  polls but cannot commit.
* ``framelog_analytics_sink_lag_seconds{topic,partition}``: how long ago the
  oldest record the sink holds uncommitted was appended to Kafka (0 when
  caught up): how far behind the queryable data is.
* ``framelog_sink_step_seconds``: one poll's worth of sink work (inserts included).
* ``framelog_analytics_sink_running``: 1 while the sink loop runs; 0 once it
  stopped (an insert or commit that kept failing ends it, so that a restart
  replays from the last commit: alert on 0, the lag gauges stop moving then).
"""
from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("framelog_playback_events_total", "Playback events written by the analytics sink", ["type"])
VIEWS = Counter("video_views_total", "Views (view_start / video_view events) written")
SHARES = Counter("video_shares_total", "Shares written")
LIKES = Counter("video_likes_total", "Likes written")
STEP_SECONDS = Histogram("framelog_sink_step_seconds", "Time to add a polled batch to the sink (inserts included)")
INSERT_SECONDS = Histogram("framelog_analytics_insert_seconds", "One ClickHouse insert of one partition's batch",
                           ["table"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LAG_RECORDS = Gauge("framelog_analytics_sink_lag_records", "Records after the sink's last committed offset",
                    ["topic", "partition"])
LAG_SECONDS = Gauge("framelog_analytics_sink_lag_seconds",
                    "Seconds since the oldest record the sink holds uncommitted was appended to Kafka (0: caught up)",
                    ["topic", "partition"])

RUNNING = Gauge("framelog_analytics_sink_running", "1 while the analytics sink loop runs")

_BY_TYPE = {"view_start": VIEWS, "video_view": VIEWS, "share": SHARES, "like": LIKES}


def count_written(type_counts: Mapping[str, int]) -> None:
    for kind, n in type_counts.items():          # one labels() lookup per type, not per record
        if not n:
            continue
        EVENTS.labels(kind).inc(n)
        counter = _BY_TYPE.get(kind)
        if counter is not None:
            counter.inc(n)


def observe_insert(table: str, seconds: float) -> None:
    INSERT_SECONDS.labels(table).observe(seconds)


def observe_step(seconds: float) -> None:
    STEP_SECONDS.observe(seconds)


def set_lag(topic: str, partition: int, records: int | None, seconds: float | None) -> None:
    if records is not None:
        LAG_RECORDS.labels(topic, str(partition)).set(max(0, records))
    if seconds is not None:
        LAG_SECONDS.labels(topic, str(partition)).set(max(0.0, seconds))
