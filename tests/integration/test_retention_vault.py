"""Compliance retention on the real SeaweedFS: deep-archive renditions live in an Object Lock vault.

The vault bucket is created with S3 Object Lock; archiving copies a rendition
there, locks every object (GOVERNANCE) until its tier's retention ends,
verifies, then removes the serving copies; a restore copies them back. A
locked object cannot be deleted without the governance bypass.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from framelog.core import object_keys
from framelog.core.ids import new_video_id
from framelog.sinks.object_store import ObjectStore, vault_store
from framelog.sinks.tier_mover import TierMover

pytestmark = pytest.mark.integration


@pytest.fixture()
def stores(stack, config):
    s3, state_dir = config.object_storage, config.stack.state_dir
    return ObjectStore(s3, state_dir), vault_store(s3, state_dir)


def test_archive_locks_the_rendition_in_the_vault_and_a_restore_brings_it_back(config, stores):
    serving, vault = stores
    tiers = config.storage_tiers
    prefix = object_keys.rendition_prefix(new_video_id(), "720p")
    objects = {f"{prefix}playlist.m3u8": b"#EXTM3U\n",
               **{f"{prefix}seg_{i:03d}.ts": bytes([i]) * 5000 for i in range(3)}}
    for key, body in objects.items():
        serving.put_bytes(key, body, "video/mp2t")
    mover = TierMover(serving, vault)
    now = datetime.now(UTC)

    report = mover.move_between(prefix, tiers["cold_tier"], tiers["deep_archive_tier"], now)
    assert report.copied == len(objects) and set(report.keys) == set(objects)
    assert list(serving.keys(prefix)) == []                             # no longer served
    for key in objects:
        mode, until = vault.retention(key)
        assert mode == "GOVERNANCE"
        assert until >= now + timedelta(seconds=tiers["deep_archive_tier"].retention_period - 60)
        assert vault.head(key)["StorageClass"] == "DEEP_ARCHIVE"
        version = vault.head(key)["VersionId"]
        with pytest.raises(ClientError, match="AccessDenied"):       # the lock holds
            vault.client.delete_object(Bucket=vault.bucket, Key=key, VersionId=version)

    again = mover.move_between(prefix, tiers["cold_tier"], tiers["deep_archive_tier"], now)
    assert again.copied == 0                                           # idempotent

    back = mover.move_between(prefix, tiers["deep_archive_tier"], tiers["hot_tier"], now)
    assert back.copied == len(objects)
    for key, body in objects.items():
        assert serving.get_bytes(key) == body
        assert serving.head(key).get("StorageClass", "STANDARD") == "STANDARD"
        assert vault.retention(key) is not None                        # the locked copy stays

    assert vault.delete_locked_prefix(prefix) == 0                    # still locked: nothing goes
    assert vault.delete_locked_prefix(prefix, bypass=True) >= len(objects)   # an operator's override can act
    assert list(vault.keys(prefix)) == []


def test_the_vault_bucket_has_object_lock(config, stores):
    _, vault = stores
    conf = vault.client.get_object_lock_configuration(Bucket=vault.bucket)["ObjectLockConfiguration"]
    assert conf["ObjectLockEnabled"] == "Enabled"
