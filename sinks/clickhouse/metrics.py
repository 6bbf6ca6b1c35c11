"""Prometheus metrics of the analytics sink (views, shares, likes, ingest rate, insert latency)."""
from __future__ import annotations

from collections import Counter as Counter_
from typing import Sequence

from prometheus_client import Counter, Histogram

EVENTS = Counter("framelog_playback_events_total", "Playback events consumed by the analytics sink", ["type"])
VIEWS = Counter("video_views_total", "Views (view_start / video_view events) consumed")
SHARES = Counter("video_shares_total", "Shares consumed")
LIKES = Counter("video_likes_total", "Likes consumed")
STEP_SECONDS = Histogram("framelog_sink_step_seconds", "Time to add a polled batch to the sink (inserts included)")

_BY_TYPE = {"view_start": VIEWS, "video_view": VIEWS, "share": SHARES, "like": LIKES}


def observe_step(records: Sequence, seconds: float) -> None:
    if not records:
        return
    counts = Counter_()
    for r in records:
        counts[r.value.get("type", "quality_switch") if r.name == "PlaybackEvent" else "quality_switch"] += 1
    for kind, n in counts.items():          # one labels() lookup per type, not per record
        EVENTS.labels(kind).inc(n)
        counter = _BY_TYPE.get(kind)
        if counter is not None:
            counter.inc(n)
    STEP_SECONDS.observe(seconds)
