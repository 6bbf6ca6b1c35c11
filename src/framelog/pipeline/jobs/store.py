"""Completion markers in object storage: the record that a stage's job is done.

The store also answers whether a video was deleted (its tombstone, see
``framelog.pipeline.jobs.tombstones``) and removes a deleted video's objects, so the
stage runner needs one store for both.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framelog.pipeline.jobs import tombstones
from framelog.sinks.object_store import ObjectStore


class S3ResultStore:
    """Markers are small JSON objects written after all of a job's outputs landed."""

    def __init__(self, objects: ObjectStore):
        self.objects = objects

    def get_marker(self, key: str) -> dict[str, str] | None:
        found: Any = self.objects.get_json(key)
        return found

    def put_marker(self, key: str, outputs: Mapping[str, str]) -> None:
        self.objects.put_json(key, dict(outputs))

    def video_deleted(self, video_id: str) -> bool:
        return tombstones.is_deleted(self.objects, video_id)

    def discard_video(self, video_id: str, stage_values: Mapping[str, str]) -> dict[str, int]:
        """Remove every object of a deleted video, this job's writes and its MP4 (named in ``stage_values``) too."""
        return tombstones.purge_video(self.objects, video_id, tombstones.mp4_keys_in(stage_values))
