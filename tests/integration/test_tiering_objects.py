"""The tiering worker moves every object a video keeps by its own rules (issue 14 pt 6): the raw upload
and the MP4 leave the hot tier (the tiering worker's narrow S3 identity may touch them, never keys/),
a watched video's MP4 stays, the thumbnails stay readable, and storage_utilization counts them all.

Time is shrunk to seconds by an overlay (tests/integration/support/tiering_worker.py) that adds
object rules in seconds; the code path is the worker's own.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from framelog.core.config import Config, load_config
from framelog.core.ids import new_video_id
from framelog.schemas.events import new_event
from framelog.sinks.object_store import ObjectStore
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from framelog.streams.replay import ReplayedTable
from tests.integration.support import wait_for
from tests.integration.support.tiering_worker import AGE_SECONDS, KEEP_HOT_SESSIONS, play, seconds_config

pytestmark = pytest.mark.integration

DEADLINE = 60.0
AGE_DAYS = AGE_SECONDS / 86400
OBJECT_RULES = {"tiering_object_rules": {
    "source": [{"name": "Source archive", "min_age_days": AGE_DAYS, "target_tier": "cold_tier"}],
    "mp4": [{"name": "MP4 low usage", "min_age_days": AGE_DAYS, "max_access_count": KEEP_HOT_SESSIONS,
             "target_tier": "cold_tier"}],
    "thumbnails": [{"name": "Thumbnails", "target_tier": "hot_tier"}],
}}


@pytest.fixture(scope="module")
def tcfg(stack, tmp_path_factory) -> tuple[Config, Path]:
    """The seconds configuration of the tiering tests plus object rules in seconds."""
    _, path = seconds_config(tmp_path_factory.mktemp("tiering-objects"))
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, **OBJECT_RULES}))
    return load_config(overlay=path), path


class Transitions(ReplayedTable):
    def __init__(self, config: Config):
        super().__init__(config.streams, (topics.TIER_TRANSITIONS,), group_prefix="it-tiering-objects")
        self.values: list[dict] = []

    def _fold(self, record) -> None:
        if record.name == "TierTransition":
            self.values.append(record.value)

    def of(self, video_id: str) -> dict[str, dict]:
        with self._lock:
            return {v["rendition"]: v for v in self.values if v["video_id"] == video_id}


def publish(store: ObjectStore, producer: EventProducer, vid: str) -> dict[str, int]:
    """A published video's objects (rendition, upload, MP4, thumbnails) and its AssetPublished; key -> size."""
    objects = {f"hls/{vid}/360p/seg0000.ts": 4000, f"hls/{vid}/360p/playlist.m3u8": 40,
               f"uploads/{vid}/original": 9000, f"videos/2026/12/360p/{vid}.mp4": 5000,
               f"thumbnails/{vid}/poster.jpg": 300, f"thumbnails/{vid}/storyboard.vtt": 60}
    for key, size in objects.items():
        store.put_bytes(key, b"x" * size)
    producer.deliver(topics.ASSETS, "AssetPublished", new_event(
        "AssetPublished", video_id=vid, job_id=f"job-{vid}", master_playlist_key=f"hls/{vid}/master.m3u8",
        renditions=[{"name": "360p", "width": 16, "height": 9, "bandwidth": 1000, "average_bandwidth": 900,
                     "codecs": "avc1.640028", "frame_rate": 25.0, "playlist_key": f"hls/{vid}/360p/playlist.m3u8",
                     "segment_count": 1, "size_bytes": 4040}],
        thumbnails=[f"thumbnails/{vid}/poster.jpg"],
        metadata={"source_key": f"videos/2026/12/360p/{vid}.mp4", "mp4_size": "5000",
                  "upload_key": f"uploads/{vid}/original", "upload_size": "9000", "thumbnails_size": "360"}),
        key=vid)
    return objects


def storage_class(store: ObjectStore, key: str) -> str:
    return (store.head(key) or {}).get("StorageClass") or "STANDARD"


def test_source_and_mp4_follow_their_rules_thumbnails_stay(tcfg, tiering_worker):
    cfg, _ = tcfg
    store = ObjectStore(cfg.object_storage, cfg.stack.state_dir)
    log = Transitions(cfg).start()
    assert log.wait_ready(60)
    producer = EventProducer(cfg.streams)
    try:
        idle, watched = new_video_id(), new_video_id()
        publish(store, producer, idle)
        publish(store, producer, watched)
        play(producer, watched, "360p", sessions=KEEP_HOT_SESSIONS)       # watched: its MP4 stays hot

        moved = wait_for(lambda: (lambda t: t if {"_source", "_mp4"} <= t.keys() else None)(log.of(idle)),
                         "the idle video's source and MP4 transitions", DEADLINE)
        assert (moved["_source"]["to_tier"], moved["_source"]["rule"]) == ("cold_tier", "Source archive")
        assert (moved["_mp4"]["to_tier"], moved["_mp4"]["rule"]) == ("cold_tier", "MP4 low usage")
        assert moved["_source"]["object_keys"] == [f"uploads/{idle}/original"]
        assert moved["_source"]["size_bytes"] == 9000
        assert storage_class(store, f"uploads/{idle}/original") == "GLACIER"
        assert storage_class(store, f"videos/2026/12/360p/{idle}.mp4") == "GLACIER"
        assert storage_class(store, f"thumbnails/{idle}/poster.jpg") == "STANDARD"

        wait_for(lambda: "_source" in log.of(watched) or None, "the watched video's source transition", DEADLINE)
        assert storage_class(store, f"uploads/{watched}/original") == "GLACIER"    # nobody streams the source
        assert "_mp4" not in log.of(watched) and "_thumbnails" not in log.of(watched)
        assert storage_class(store, f"videos/2026/12/360p/{watched}.mp4") == "STANDARD"
        assert "360p" not in log.of(watched)                                      # the played rendition stays
    finally:
        producer.close()
        log.stop()
