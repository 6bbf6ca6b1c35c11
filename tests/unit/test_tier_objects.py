"""Every object a video keeps is tiered and counted (issue 14 pt 6): the raw upload, the MP4 and the
thumbnails are object groups of the tier ledger, folded from AssetPublished, counted on the video's
sessions and decided by their own rules (tiering_object_rules)."""
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from framelog.pipeline.agents.tiering_metrics import TieringMetrics
from framelog.pipeline.tiering_fold import fold_event, rendition_row
from framelog.processors import tier_ledger as ledger

T0 = datetime(2025, 3, 1, tzinfo=UTC)
VID = "vidobj1"


def asset(at=T0):
    return {"event_id": "e1", "video_id": VID, "event_time": at, "job_id": "j1",
            "renditions": [{"name": "720p", "playlist_key": f"hls/{VID}/720p/playlist.m3u8", "size_bytes": 1000}],
            "thumbnails": [f"thumbnails/{VID}/poster.jpg"],
            "metadata": {"source_key": f"videos/2025/03/720p/{VID}.mp4", "mp4_size": "900",
                         "upload_key": f"uploads/{VID}/original", "upload_size": "5000", "thumbnails_size": "70"}}


def published_rows(cfg):
    rows = {}
    result = fold_event(rows, "AssetPublished", asset(), 0, cfg.tiering)
    assert set(result.rendition_keys) == {f"{VID}/720p", f"{VID}/_source", f"{VID}/_mp4", f"{VID}/_thumbnails"}
    return rows


def test_asset_published_tracks_the_source_the_mp4_and_the_thumbnails(cfg):
    rows = published_rows(cfg)
    source = rendition_row(rows, f"{VID}/_source")
    mp4 = rendition_row(rows, f"{VID}/_mp4")
    thumbs = rendition_row(rows, f"{VID}/_thumbnails")
    assert (source.object_prefix, source.size_bytes) == (f"uploads/{VID}/original", 5000)
    assert (mp4.object_prefix, mp4.size_bytes) == (f"videos/2025/03/720p/{VID}.mp4", 900)
    assert (thumbs.object_prefix, thumbs.size_bytes) == (f"thumbnails/{VID}/", 70)
    assert all(r.tier == "hot_tier" for r in (source, mp4, thumbs))
    assert rows[VID]["renditions"] == ["720p"]             # a restore of the video's renditions is not of its source
    assert rows[VID]["objects"] == ["_source", "_mp4", "_thumbnails"]


def test_metrics_count_every_object_of_a_video(cfg):
    rows = published_rows(cfg)
    records = [rendition_row(rows, k) for k in rows if "/" in k]
    metrics = TieringMetrics(cfg.tiering, cfg.metrics, cfg.object_storage.region, CollectorRegistry())
    by_tier = metrics.observe_storage(records)
    assert by_tier["hot_tier"] == 1000 + 900 + 5000 + 70


def test_the_videos_sessions_count_on_its_objects_once_each(cfg):
    rows = published_rows(cfg)
    for session in ("s1", "s1", "s2"):
        fold_event(rows, "PlaybackEvent", {"video_id": VID, "session_id": session, "event_time": T0,
                                           "rendition": "720p", "type": "progress"}, 0, cfg.tiering)
    assert rendition_row(rows, f"{VID}/_mp4").access_count == 2
    assert rendition_row(rows, f"{VID}/_source").access_count == 2


def _group(cfg, name, age_days, accesses, last_view_days=None):
    created = ledger.to_ms(T0 - timedelta(days=age_days))
    last = None if last_view_days is None else ledger.to_ms(T0 - timedelta(days=last_view_days))
    return ledger.RenditionRecord(VID, name, "x/" + VID, created, created, "hot_tier", access_count=accesses,
                                  last_access_ms=last)


@pytest.mark.parametrize("group, age, accesses, tier, rule", [
    ("_source", 29, 0, None, None),
    ("_source", 30, 500, "warm_tier", "Source settled"),           # nobody streams the source
    ("_source", 90, 500, "cold_tier", "Source archive"),
    ("_mp4", 30, 0, "warm_tier", "MP4 moderate usage"),
    ("_mp4", 90, 9, "cold_tier", "MP4 low usage"),
    ("_mp4", 90, 10, "warm_tier", "MP4 moderate usage"),
    ("_thumbnails", 400, 0, None, None),                           # posters stay readable
    ("720p", 90, 9, "cold_tier", "Low usage"),                     # renditions keep the seed's rules
])
def test_each_object_group_follows_its_own_rules(cfg, group, age, accesses, tier, rule):
    move = ledger.next_move(_group(cfg, group, age, accesses), T0, cfg.tiering)
    assert (move.to_tier, move.rule_name) == (tier, rule) if tier else move is None


def test_object_rules_are_configuration(cfg):
    assert [r.name for r in cfg.tiering_object_rules.source] == ["Source archive", "Source settled", "Source recent"]
    assert ledger.rules_for("_mp4", cfg.tiering) == cfg.tiering_object_rules.mp4
    assert ledger.rules_for("1080p", cfg.tiering) == cfg.tiering_rules


def test_an_object_key_of_another_video_is_refused(cfg):
    with pytest.raises(ValueError):
        ledger.on_object_published(None, asset(), "_mp4", "videos/2025/03/720p/other.mp4", 1, cfg.tiering)
    with pytest.raises(ValueError):
        ledger.on_object_published(None, asset(), "_nope", f"videos/{VID}.mp4", 1, cfg.tiering)


def test_sessions_folded_before_the_publication_count_on_the_objects(cfg):
    rows = {}
    fold_event(rows, "PlaybackEvent", {"video_id": VID, "session_id": "early", "event_time": T0,
                                       "rendition": "720p", "type": "view_start"}, 0, cfg.tiering)
    fold_event(rows, "AssetPublished", asset(), 0, cfg.tiering)
    assert rendition_row(rows, f"{VID}/_mp4").access_count == 1
    fold_event(rows, "PlaybackEvent", {"video_id": VID, "session_id": "early", "event_time": T0,
                                       "rendition": "720p", "type": "progress"}, 0, cfg.tiering)
    assert rendition_row(rows, f"{VID}/_mp4").access_count == 1          # the same session, once
