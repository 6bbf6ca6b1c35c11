"""Deletion tombstones: the durable "this video is deleted" that the pipeline obeys.

``DELETE /videos/{id}`` writes ``deleted/{id}`` *before* it removes the
video's objects. The pipeline checks the tombstone before it runs a stage and
again after the stage's writes landed (``streams.agents.stage``). That order
closes the race with a job running at deletion time: either the job's check
sees the tombstone and the job removes what it wrote itself, or the check came
first, so every write of the job came before the tombstone, hence before the
delete listed the video's prefixes, and the delete removes them.

The tombstone lives outside the video's prefixes (a delete never removes it)
and under a prefix no edge serves; it is a few bytes per deleted video.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from framelog.core import object_keys
from framelog.sinks.object_store import ObjectStore


def mp4_key(video_id: str, key: object) -> str | None:
    """``key`` if it is this video's optimised MP4 (``videos/…/{id}.mp4``, the seed's source key), else None."""
    return key if isinstance(key, str) and object_keys.is_progressive_mp4(key, video_id) else None


def mark_deleted(store: ObjectStore, video_id: str, reason: str = "") -> None:
    store.put_json(object_keys.tombstone(video_id), {"video_id": video_id, "deleted_at_ms": int(time.time() * 1000),
                                             "reason": reason})


def is_deleted(store: ObjectStore, video_id: str) -> bool:
    return store.head(object_keys.tombstone(video_id)) is not None


def recorded_mp4_keys(store: ObjectStore, video_id: str) -> set[str]:
    """The MP4 keys the pipeline's completion markers name (validation decides the key; cdn_upload writes it).

    The published asset names the MP4 too, but a delete can come before the
    asset reached the catalogue; the markers are in storage before the MP4 is.
    """
    found: set[str] = set()
    for key in store.keys(object_keys.staging_root(video_id)):
        if object_keys.is_marker(key):
            outputs = store.get_json(key) or {}
            found.update(k for k in (mp4_key(video_id, outputs.get("source_key")),) if k)
    return found


def purge_video(store: ObjectStore, video_id: str, extra_keys: Iterable[str] = ()) -> dict[str, int]:
    """Remove every object of the video (its prefixes, its MP4s); objects removed, by prefix or key."""
    extra = set(filter(None, (mp4_key(video_id, k) for k in extra_keys))) | recorded_mp4_keys(store, video_id)
    removed: dict[str, int] = {}
    for key in sorted(extra):
        removed[key] = 1 if store.head(key) is not None else 0
        store.delete(key)
    for prefix in object_keys.video_prefixes(video_id):
        removed[prefix] = store.delete_prefix(prefix)
    return removed


def mp4_keys_in(values: Mapping[str, str]) -> list[str]:
    """The ``source_key`` a stage's inputs or outputs carry, if any."""
    return [values["source_key"]] if values.get("source_key") else []
