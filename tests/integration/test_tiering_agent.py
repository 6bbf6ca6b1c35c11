"""Storage tiering on the real stack: the tiering worker, Kafka, SeaweedFS's S3 storage classes.

Time is shrunk to seconds by a configuration overlay (see tests/integration/support/tiering_worker.py),
not the code path. The worker is the real ``framelog worker --stage tiering`` process; it is killed
with SIGKILL mid-move in the last test.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from framelog.core import object_keys
from framelog.core.config import Config
from framelog.core.ids import new_video_id
from framelog.schemas.events import new_event
from framelog.sinks.object_store import ObjectStore
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord
from framelog.streams.producer import EventProducer
from framelog.streams.replay import ReplayedTable
from framelog.views.tier_view import ARCHIVED, AVAILABLE, RESTORING, TierView
from tests.integration import support
from tests.integration.support.tiering_worker import AGE_SECONDS, RESTORE_DELAY, play

pytestmark = pytest.mark.integration

DEADLINE = 60.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE, step: float = 0.05) -> Any:
    return support.wait_for(condition, what, timeout, step)


class TransitionLog(ReplayedTable):
    """Every record on storage.tier-transitions, replayed."""

    def __init__(self, config: Config):
        super().__init__(config.streams, (topics.TIER_TRANSITIONS,), group_prefix="it-tiering")
        self.decoded: list[DecodedRecord] = []

    def _fold(self, record: Any) -> None:
        self.decoded.append(record)

    def of(self, video_id: str, name: str = "TierTransition") -> list[dict[str, Any]]:
        with self._lock:
            return [r.value for r in self.decoded if r.name == name and r.value["video_id"] == video_id]


@pytest.fixture(scope="module")
def transitions(tcfg):
    table = TransitionLog(tcfg[0]).start()
    assert table.wait_ready(60)
    yield table
    table.stop()


@pytest.fixture(scope="module")
def store(tcfg) -> ObjectStore:
    return ObjectStore(tcfg[0].object_storage, tcfg[0].stack.state_dir)


@pytest.fixture(scope="module")
def producer(tcfg):
    p = EventProducer(tcfg[0].streams)
    yield p
    p.close()


def publish(cfg: Config, store: ObjectStore, producer: EventProducer, video_id: str,
            renditions: dict[str, int]) -> None:
    """Put HLS-like objects for each rendition ({name: segments}) and announce them with AssetPublished."""
    rs = []
    for name, segments in renditions.items():
        size = 0
        for i in range(segments):
            body = f"{video_id}/{name}/{i}".encode() * 20
            store.put_bytes(f"hls/{video_id}/{name}/seg{i:04d}.ts", body, "video/mp2t",
                            cache_control="public, max-age=31536000")
            size += len(body)
        store.put_bytes(object_keys.rendition_playlist(video_id, name), b"#EXTM3U\n", "application/vnd.apple.mpegurl")
        rs.append({"name": name, "width": 16, "height": 9, "bandwidth": 1000, "average_bandwidth": 900,
                   "codecs": "avc1.640028", "frame_rate": 25.0,
                   "playlist_key": object_keys.rendition_playlist(video_id, name),
                   "segment_count": segments, "size_bytes": size})
    producer.deliver(topics.ASSETS, "AssetPublished", new_event(
        "AssetPublished", video_id=video_id, job_id=f"job-{video_id}", renditions=rs,
        master_playlist_key=object_keys.master_playlist(video_id)), key=video_id)


def inventory(store: ObjectStore, prefix: str) -> dict[str, tuple[str, int, str]]:
    return {o["Key"]: (o["ETag"], o["Size"], o.get("StorageClass") or "STANDARD") for o in store.objects(prefix)}


def metric(url_or_text: str, name: str, **labels: str) -> float | None:
    """One sample from a worker's /metrics (a URL to scrape, or a scrape's text)."""
    text = httpx.get(url_or_text, timeout=5).text if url_or_text.startswith("http") else url_or_text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_unplayed_rendition_goes_cold_and_the_played_one_stays_hot_then_restores(
        tcfg, tiering_worker, transitions, store, producer):
    cfg, _ = tcfg
    vid = new_video_id()
    play(producer, vid, "480p", sessions=10)                 # 10 sessions: not "fewer than 10"
    publish(cfg, store, producer, vid, {"720p": 12, "480p": 4})
    before = {r: inventory(store, object_keys.rendition_prefix(vid, r)) for r in ("720p", "480p")}
    assert len(before["720p"]) == 13 and all(c == "STANDARD" for _, _, c in before["720p"].values())

    [t] = wait_for(lambda: transitions.of(vid), "the 720p rendition's TierTransition")
    assert (t["rendition"], t["from_tier"], t["to_tier"], t["rule"]) == ("720p", "hot_tier", "cold_tier", "Low usage")
    assert t["storage_class"] == "GLACIER" and t["access_count"] == 0
    assert t["age_days"] * 86400 >= AGE_SECONDS
    assert t["object_count"] == 13 and sorted(t["object_keys"]) == sorted(before["720p"])
    assert t["size_bytes"] == sum(size for _, size, _ in before["720p"].values())

    after = inventory(store, object_keys.rendition_prefix(vid, "720p"))
    assert after.keys() == before["720p"].keys()                                     # nothing lost, nothing new
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before["720p"].items()}   # ETag, size
    assert {c for _, _, c in after.values()} == {"GLACIER"}
    head = store.head(object_keys.hls_file(vid, "720p", "seg0000.ts"))
    assert (head["StorageClass"], head["ContentType"], head["CacheControl"]) == (
        "GLACIER", "video/mp2t", "public, max-age=31536000")
    assert inventory(store, object_keys.rendition_prefix(vid, "480p")) == before["480p"]    # played: stays hot

    wait_for(lambda: (metric(tiering_worker.metrics_url, "storage_utilization", tier="cold_tier",
                             region=cfg.object_storage.region) or 0) >= t["size_bytes"], "storage_utilization")
    scrape = httpx.get(tiering_worker.metrics_url, timeout=5).text
    region = cfg.object_storage.region
    for tier in cfg.storage_tiers:
        stored = metric(scrape, "storage_utilization", tier=tier, region=region)
        assert metric(scrape, "storage_costs", tier=tier, region=region) == pytest.approx(
            stored / 2**30 * cfg.storage_tiers[tier].price_per_gb_month)
    assert metric(scrape, "storage_utilization", tier="cold_tier", region=region) >= t["size_bytes"]
    assert metric(scrape, "access_patterns_total", tier="hot_tier", access_type="view_start") >= 10
    assert metric(scrape, "access_patterns_total", tier="hot_tier", access_type="progress") >= 20

    # restore: the stream API's view says "restoring" with an estimate, asks once, then "available"
    view = TierView(cfg.streams, cfg.tiering).start()
    try:
        assert view.wait_ready(30)
        wait_for(lambda: view.record(vid, "720p") and view.record(vid, "720p").tier == "cold_tier", "view folded")
        listed = view.availability(vid, "720p", request=False)          # only listed: reports, asks nothing
        assert listed.state == ARCHIVED and not listed.requested_now and listed.estimate_seconds == RESTORE_DELAY
        first = view.availability(vid, "720p")
        assert first.state == RESTORING and first.requested_now
        assert 0 < first.estimate_seconds <= RESTORE_DELAY
        second = view.availability(vid, "720p")
        assert second.state == RESTORING and not second.requested_now
        assert second.estimate_seconds <= first.estimate_seconds
        assert view.availability(vid, "480p").state == AVAILABLE        # the other rendition plays meanwhile
        requested = time.monotonic()
        wait_for(lambda: view.availability(vid, "720p").available, "the restored rendition", timeout=30)
        assert time.monotonic() - requested >= second.estimate_seconds - 0.5
    finally:
        view.stop()
    assert len(transitions.of(vid, "RestoreRequest")) == 1
    restored = transitions.of(vid)[-1]
    assert (restored["from_tier"], restored["to_tier"], restored["rule"]) == ("cold_tier", "hot_tier", "restore")
    final = inventory(store, object_keys.rendition_prefix(vid, "720p"))
    assert {k: v[:2] for k, v in final.items()} == {k: v[:2] for k, v in before["720p"].items()}
    assert {c for _, _, c in final.values()} == {"STANDARD"}
    assert len(transitions.of(vid)) == 2


def test_worker_killed_mid_move_neither_skips_nor_repeats_the_transition(tcfg, tiering_worker, transitions,
                                                                        store, producer):
    cfg, _ = tcfg
    vid = new_video_id()
    prefix = object_keys.rendition_prefix(vid, "1080p")
    play(producer, vid, "480p", sessions=10)
    publish(cfg, store, producer, vid, {"1080p": 150, "480p": 2})
    before = inventory(store, prefix)
    watched = inventory(store, object_keys.rendition_prefix(vid, "480p"))

    def partly_moved():
        moved = {k for k, (_, _, c) in inventory(store, prefix).items() if c == "GLACIER"}
        return moved if moved else None
    moved_at_kill = wait_for(partly_moved, "the first objects in GLACIER", step=0.01)
    tiering_worker.kill9()
    at_kill = inventory(store, prefix)
    assert 0 < len(moved_at_kill) and len(moved_at_kill) < len(before), "the kill came after the whole move"
    modified = {k: store.head(k)["LastModified"] for k, (_, _, c) in at_kill.items() if c == "GLACIER"}
    assert not transitions.of(vid)

    tiering_worker.start()
    [t] = wait_for(lambda: transitions.of(vid), "the TierTransition after the restart", timeout=90)
    assert (t["from_tier"], t["to_tier"], t["object_count"]) == ("hot_tier", "cold_tier", len(before))
    after = inventory(store, prefix)
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}
    assert {c for _, _, c in after.values()} == {"GLACIER"}
    assert {k: store.head(k)["LastModified"] for k in modified} == modified           # none copied twice
    # the restarted worker evaluates again (its metrics include the move) and decides nothing more
    wait_for(lambda: (metric(tiering_worker.metrics_url, "storage_utilization", tier="cold_tier",
                             region=cfg.object_storage.region) or 0) >= t["size_bytes"], "a sweep after the move")
    assert len(transitions.of(vid)) == 1
    # the table came back from its changelog: the rendition published before the kill was known after it
    # (its move finished), and the watched one still has its 10 accesses, so it stays hot
    assert inventory(store, object_keys.rendition_prefix(vid, "480p")) == watched
