"""Tombstone keys and the MP4 key check: the ids and keys a delete trusts."""
from __future__ import annotations

import pytest

from framelog.core import object_keys
from framelog.core.errors import InvalidIdError
from framelog.pipeline.jobs import tombstones


def test_keys_are_built_from_validated_ids_only():
    assert object_keys.tombstone("abc_1") == "deleted/abc_1"
    assert object_keys.video_prefixes("abc_1")[0] == "uploads/abc_1/"
    for bad in ("../x", "a/b", ""):
        with pytest.raises(InvalidIdError):
            object_keys.tombstone(bad)


def test_only_the_videos_own_mp4_is_named():
    assert tombstones.mp4_key("v1", "videos/2026/12/720p/v1.mp4") == "videos/2026/12/720p/v1.mp4"
    for bad in ("videos/2026/12/720p/v2.mp4", "videos/2026/12/01/720p/v1.mp4", "hls/v1/v1.mp4",
                "videos/../keys/v1.mp4", None, 3):
        assert tombstones.mp4_key("v1", bad) is None
    assert tombstones.mp4_keys_in({"source_key": "videos/a/v1.mp4", "x": "y"}) == ["videos/a/v1.mp4"]
    assert tombstones.mp4_keys_in({}) == []
