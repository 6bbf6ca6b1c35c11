"""`framelog init` against the real local stack: the topics exist and a missing bucket is created, twice over."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from framelog.sinks.s3 import s3_client
from framelog.streams.admin import admin_client
from framelog.streams.topics import all_topics

pytestmark = pytest.mark.integration

FRAMELOG = str(Path(sys.executable).with_name("framelog"))


def _init(bucket: str) -> list[str]:
    out = subprocess.run([FRAMELOG, "init", "--timeout", "60"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "FRAMELOG_S3_BUCKET": bucket})
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_init_creates_a_missing_bucket_and_every_topic(stack, config):
    bucket = f"init-test-{uuid.uuid4().hex[:12]}"
    client = s3_client(dataclasses.replace(config.object_storage, bucket=bucket), config.stack.state_dir)
    try:
        first = _init(bucket)
        assert f"bucket {bucket}: created" in first
        client.head_bucket(Bucket=bucket)
        existing = admin_client(config.kafka, config.stack).list_topics(timeout=10).topics
        assert {t.name for t in all_topics(config.topics)} <= set(existing)

        again = _init(bucket)                     # idempotent: nothing to do the second time
        assert f"bucket {bucket}: exists" in again
        assert again[0].startswith("topics: created 0, updated 0,")
        assert "embedded engine" in again[-1]     # chdb is the sink's; init leaves it alone
    finally:
        client.delete_bucket(Bucket=bucket)
