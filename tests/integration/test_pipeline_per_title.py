"""The per-title ladder on the real pipeline: rungs that add nothing are not published."""
from __future__ import annotations

import re

import pytest

from framelog.core import object_keys
from framelog.streams import topics
from tests.integration.support.pipeline import process_clip, read_topic
from tests.media.support import clips

pytestmark = pytest.mark.integration


def test_rungs_that_add_nothing_are_dropped_from_the_published_ladder(config, worker, status, store, tmp_path):
    video_id, view = process_clip(config, status, clips.flat(tmp_path / "flat.mp4"))
    assert view["state"] == "ready", view
    made = view["stages"]["transcoding"]["outputs"]["renditions"].split(",")
    assert len(made) > 1, made                                     # 720p source: 720p, 480p, 360p made
    kept = view["stages"]["optimization"]["outputs"]["kept_renditions"].split(",")
    dropped = view["stages"]["optimization"]["outputs"]["dropped_renditions"].split(",")
    assert len(kept) == 1 and set(dropped) == set(made) - set(kept), (kept, dropped)

    master = store.get_bytes(object_keys.master_playlist(video_id)).decode()
    assert re.findall(r"^(\S+)/playlist\.m3u8$", master, re.M) == kept
    for name in dropped:
        assert not list(store.keys(object_keys.rendition_prefix(video_id, name))), name        # never published
    asset = read_topic(config, topics.ASSETS, video_id)[0][1]
    assert [r["name"] for r in asset["renditions"]] == kept
    assert set(asset["metadata"]["dropped_renditions"].split(",")) == set(dropped)
