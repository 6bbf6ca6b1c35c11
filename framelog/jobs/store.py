"""Completion markers in object storage: the record that a stage's job is done."""
from __future__ import annotations

import json
from typing import Mapping

from botocore.exceptions import ClientError

from framelog.config import Config
from framelog.s3 import s3_client


class S3ResultStore:
    """Markers are small JSON objects written after all of a job's outputs landed."""

    def __init__(self, config: Config):
        self.client = s3_client(config)
        self.bucket = config.object_storage.bucket

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
