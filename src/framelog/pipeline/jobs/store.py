"""Completion markers in object storage: the record that a stage's job is done.

The store also answers whether a video was deleted (its tombstone, see
``framelog.pipeline.jobs.tombstones``) and removes a deleted video's objects, so the
stage runner needs one store for both.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

from botocore.exceptions import ClientError

from framelog.core.config import Config
from framelog.pipeline.jobs import tombstones
from framelog.sinks.object_store import ObjectStore
from framelog.sinks.s3 import s3_client


class S3ResultStore:
    """Markers are small JSON objects written after all of a job's outputs landed."""

    def __init__(self, config: Config):
        self.client = s3_client(config)
        self.bucket = config.object_storage.bucket
        self.objects = ObjectStore(config, client=self.client)

    def get_marker(self, key: str) -> dict[str, str] | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(body)

    def put_marker(self, key: str, outputs: Mapping[str, str]) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(dict(outputs)).encode(),
                               ContentType="application/json")

    def video_deleted(self, video_id: str) -> bool:
        return tombstones.is_deleted(self.objects, video_id)

    def discard_video(self, video_id: str, stage_values: Mapping[str, str]) -> dict[str, int]:
        """Remove every object of a deleted video, this job's writes and its MP4 (named in ``stage_values``) too."""
        return tombstones.purge_video(self.objects, video_id, tombstones.mp4_keys_in(stage_values))
