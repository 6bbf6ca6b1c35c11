"""The origin shield between the edges and S3: an edge miss goes to the shield, S3 only on the shield's miss;
purges reach the shield; only the edges (their origin token) get an answer from it.

The shield's access log (one JSON line per request, with its cache status and
the upstream's status) is what the bucket saw: a shield MISS is one GET to S3.
"""
from __future__ import annotations

import json

import pytest

from framelog.core.ids import new_video_id
from framelog.processors.edge_signing import origin_token
from framelog.sinks.edges.cache_commands import cached_keys, shield_cache
from framelog.sinks.edges.protocol import SHIELD_NAME, shield_address, shield_dir
from framelog.stack.nginx import shield_ttl
from framelog.stack.process import wait_until
from tests.integration.support.edges import cache_settings, fetch, put_fake_video, url

pytestmark = pytest.mark.integration

LOG_WAIT = 10.0          # nginx writes a request's log line when it ends; give it a moment under load


def shield_log(config, object_path: str) -> list[dict]:
    """The shield's access-log records for one object key."""
    path = shield_dir(config.stack.state_dir) / "access.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["path"] == object_path]


def shield_keys(config, video_id: str) -> set[str]:
    return {k for k in cached_keys(shield_dir(config.stack.state_dir) / "cache") if f"/{video_id}/" in k}


@pytest.fixture()
def video(stack, config) -> str:
    vid = new_video_id()
    put_fake_video(config, vid)
    return vid


def test_two_edges_missing_one_segment_make_one_s3_get(config, secret, video):
    seg = f"/hls/{video}/720p/seg_002.ts"
    first = fetch(url(config, secret, seg.lstrip("/"), "primary_cdn"))
    second = fetch(url(config, secret, seg.lstrip("/"), "secondary_cdn"))
    assert first[0] == second[0] == 200 and first[2] == second[2]
    assert first[1]["X-Cache-Status"] == second[1]["X-Cache-Status"] == "MISS"      # both edges were cold ...
    assert "X-Shield-Cache" not in first[1] and "Seaweed-X-Amz-Owner" not in first[1]
    assert wait_until(lambda: len(shield_log(config, seg)) == 2, LOG_WAIT), shield_log(config, seg)
    records = shield_log(config, seg)
    assert [r["cache"] for r in records] == ["MISS", "HIT"]                          # ... the shield once
    assert [r["upstream_status"] for r in records] == ["200", ""]                    # one GET reached S3
    assert seg in shield_keys(config, video)


def test_shield_keeps_objects_for_the_origin_level_or_their_shorter_rule(config):
    assert config.cdn.shield.cache_level == "Origin Cache" and config.cdn.shield.ttl == 7 * 24 * 3600
    assert shield_ttl("video_files", config.cdn) == 7 * 24 * 3600                        # 30 d rule, 7 d level
    assert shield_ttl("hls_playlists", config.cdn) == int(config.cdn.caching_rules["hls_playlists"].cache_duration)


def test_purge_reaches_the_shield_and_the_next_miss_refetches(config, secret, video):
    master = f"/hls/{video}/master.m3u8"
    assert fetch(url(config, secret, master.lstrip("/")))[0] == 200
    assert master in shield_keys(config, video)
    result = shield_cache(cache_settings(config), secret=secret).purge([f"/hls/{video}/*"])
    assert (result.provider, result.purged, result.errors) == (SHIELD_NAME, [master], [])
    assert shield_keys(config, video) == set()
    assert fetch(url(config, secret, master.lstrip("/"), "secondary_cdn"))[0] == 200
    assert wait_until(lambda: [r["cache"] for r in shield_log(config, master)] == ["MISS", "MISS"], LOG_WAIT)


def test_shield_answers_only_the_edges(config, secret, video):
    base = f"http://{shield_address(config.stack, config.cdn)}"
    edge = {"Referer": origin_token(secret)}
    master = f"/hls/{video}/master.m3u8"
    assert fetch(f"{base}{master}")[0] == 403                                        # not for the world
    assert fetch(f"{base}{master}", headers={"Referer": "x"})[0] == 403
    assert fetch(f"{base}{master}", headers=edge)[0] == 200
    assert fetch(f"{base}/keys/{video}/key.bin", headers=edge)[0] == 403
    assert fetch(f"{base}/{config.object_storage.bucket}{master}", headers=edge)[0] == 403
    assert fetch(f"{base}{master}", "POST", b"x", headers=edge)[0] == 403
    assert fetch(f"{base}/_purge{master}")[0] == 403                                 # purge needs the token
    assert wait_until(lambda: len(shield_log(config, master)) >= 4, LOG_WAIT)
    refused = [r for r in shield_log(config, master) if r["status"] == 403]
    assert len(refused) == 3 and all(r["upstream_status"] == "" for r in refused)    # none reached S3
