"""Trending content (seed: cache-warming trigger ``trending_content``, strategy "Geographic preloading").

A video is trending in a country when at least ``min_views`` of its views from
that country fall within the last ``window`` seconds, counted in ``step``-sized
buckets (a hopping window). The edge that serves that country is then warmed
with the video, at most once per ``rewarm_after``.

Pure decisions: the state of one (video, country) is a small JSON-able mapping
the caller keeps (the popularity group keeps it in a Faust table, so a restart
recovers it from the table's changelog). One key per (video, country) rather
than one per window: a windowed table would write a changelog key per window.
Event time is the view's own time, so a replay decides exactly as the live run
did; a view older than the window of the newest one seen counts for nothing.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from framelog.core.config import TrendingConfig

KEY_SEPARATOR = "|"


def trending_key(video_id: str, country: str | None) -> str:
    """The table key of a (video, country); no country known counts as its own region ("")."""
    return f"{video_id}{KEY_SEPARATOR}{country or ''}"


def split_key(key: str) -> tuple[str, str | None]:
    video_id, _, country = key.partition(KEY_SEPARATOR)
    return video_id, country or None


@dataclass(frozen=True)
class Observation:
    state: dict[str, Any]     # the new state to store
    views_in_window: int
    warm: bool                # True: warm the edge of this country now


def observe(state: Mapping[str, Any] | None, event_ms: int, settings: TrendingConfig) -> Observation:
    """Count one view at ``event_ms`` into ``state`` and decide whether the video now trends.

    ``state`` is ``{"buckets": {bucket: views}, "warmed_ms": ms|None}`` (bucket =
    event time // step); bucket keys may come back from JSON as strings.
    """
    step_ms = max(int(settings.step * 1000), 1)
    span = max(int(settings.window // settings.step), 1)          # buckets per window
    buckets = {int(k): int(v) for k, v in ((state or {}).get("buckets") or {}).items()}
    warmed_ms = (state or {}).get("warmed_ms")
    bucket = event_ms // step_ms
    newest = max([bucket, *buckets])
    oldest_kept = newest - span + 1
    if bucket >= oldest_kept:
        buckets[bucket] = buckets.get(bucket, 0) + 1
    buckets = {b: n for b, n in buckets.items() if b >= oldest_kept}
    views = sum(buckets.values())
    warm = (bucket >= oldest_kept and views >= settings.min_views
            and (warmed_ms is None or event_ms - int(warmed_ms) >= settings.rewarm_after * 1000))
    if warm:
        warmed_ms = event_ms
    return Observation({"buckets": {str(b): n for b, n in sorted(buckets.items())}, "warmed_ms": warmed_ms},
                       views, warm)
