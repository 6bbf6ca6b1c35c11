"""Edge pieces without nginx: access-log parsing and following, CDN metrics, purge patterns,
playlist walking, the nginx configuration, popularity crossing, health caching."""
import json
import os
import re

import httpx
import pytest
from prometheus_client import CollectorRegistry

from framelog.core.config import DEFAULT_CONFIG_PATH
from framelog.pipeline.agents.cdn import count_view, crossed_popularity
from framelog.pipeline.agents.cdn_metrics import CdnMetrics, edge_labels
from framelog.processors.edge_logs import LogFollower, parse_line
from framelog.processors.edge_signing import origin_token
from framelog.sinks.edges.cache_commands import (
    cache_file,
    cached_entries,
    matching_keys,
    playlist_uris,
    resolve_in_scope,
)
from framelog.sinks.edges.health import EdgeHealth
from framelog.stack.nginx import edge_read_policy_statement, render_config, render_shield_config


def _line(path="/_edge/hls/v1/720p/seg_001.ts", cache="HIT", status=200, nbytes=1000, rt=0.004, method="GET"):
    return json.dumps({"time": "2026-12-01T10:00:00+00:00", "method": method, "path": path, "status": status,
                       "cache": cache, "bytes": nbytes, "body_bytes": nbytes - 200, "request_time": rt,
                       "upstream_time": ""})


# ------------------------------------------------------------ log parsing

def test_parse_a_served_object():
    r = parse_line(_line())
    assert (r.object_path, r.cache_hit, r.content_type, r.bytes_sent, r.status) == (
        "/hls/v1/720p/seg_001.ts", True, "hls_segments", 1000, 200)
    assert parse_line(_line("/_edge/hls/v1/master.m3u8", cache="MISS")).content_type == "hls_playlists"
    assert parse_line(_line("/_edge/thumbnails/v1/poster.jpg", cache="EXPIRED")).cache_hit is False
    assert parse_line(_line("/_edge/hls/v1/sub.json", cache="BYPASS")).content_type == "other"


def test_refused_and_purge_requests_have_no_cache_outcome():
    refused = parse_line(_line("/s/AAAAAAAAAAAAAAAAAAAAAA/1/hls/v1/master.m3u8", cache="", status=403, nbytes=300))
    assert (refused.object_path, refused.cache_hit) == (None, None)
    assert parse_line(_line("/_purge/hls/v1/master.m3u8", cache="", nbytes=400)).cache_hit is None


@pytest.mark.parametrize("bad", ["", "not json", '{"path": "/x"}', '{"method":"GET","path":"/x","status":"x",'
                                 '"bytes":1,"request_time":0}', "[1, 2]", b"\xff\xfe"])
def test_unparseable_lines_are_skipped(bad):
    assert parse_line(bad) is None


def test_follower_reads_appended_whole_lines_and_survives_rotation(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(_line() + "\n")
    tail = LogFollower(log)                       # starts at the end: old traffic is not re-counted
    assert tail.read() == []
    with open(log, "a") as f:
        f.write(_line(cache="MISS") + "\n" + _line()[:20])     # one line and the start of the next
    assert [parse_line(x).cache for x in tail.read()] == ["MISS"]
    with open(log, "a") as f:
        f.write(_line()[20:] + "\n")
    assert [parse_line(x).cache for x in tail.read()] == ["HIT"]
    os.replace(log, tmp_path / "access.log.1")                  # rotated: a new file starts over
    log.write_text(_line(cache="STALE") + "\n")
    assert [parse_line(x).cache for x in tail.read()] == ["STALE"]
    log.write_text("")                                          # truncated
    assert tail.read() == []
    assert LogFollower(tmp_path / "missing.log").read() == []
    assert len(LogFollower(tmp_path / "access.log.1", from_start=True).read()) == 3


# ------------------------------------------------------------ metrics

def test_the_origin_shield_log_becomes_the_origin_levels_hit_ratio(cfg, tmp_path, monkeypatch):
    from framelog.core.config import load_config as load
    from framelog.pipeline.agents.cdn_metrics import EdgeLogExporter
    from framelog.sinks.edges.protocol import shield_dir

    monkeypatch.setenv("FRAMELOG_STATE_DIR", str(tmp_path))
    config = load(DEFAULT_CONFIG_PATH)
    shield_log = shield_dir(config.stack.state_dir) / "access.log"
    shield_log.parent.mkdir(parents=True)
    shield_log.write_text("".join(_line(path, cache) + "\n" for path, cache in [
        ("/hls/v1/720p/seg_001.ts", "MISS"), ("/hls/v1/720p/seg_001.ts", "HIT"),
        ("/videos/2026/12/720p/v1.mp4", "MISS"), ("/hls/v1/master.m3u8", "")]))
    reg = CollectorRegistry()
    exporter = EdgeLogExporter(config.stack, config.cdn, CdnMetrics(config.metrics, registry=reg), from_start=True)
    assert exporter.poll() == 4
    labels = {"provider": "origin-shield", "region": "origin"}
    assert reg.get_sample_value("cdn_cache_hit_ratio", {**labels, "content_type": "hls_segments"}) == 0.5
    assert reg.get_sample_value("cdn_cache_hit_ratio", {**labels, "content_type": "video_files"}) == 0.0


def test_metrics_use_the_configured_names_and_labels(cfg):
    reg = CollectorRegistry()
    m = CdnMetrics(cfg.metrics, registry=reg)
    edge = edge_labels(cfg.stack, cfg.cdn, "primary_cdn")
    for cache in ("MISS", "HIT", "HIT", "HIT"):
        m.observe(edge, parse_line(_line(cache=cache, nbytes=500, rt=0.02)))
    m.observe(edge, parse_line(_line("/s/x/1/hls/v1/master.m3u8", cache="", status=403, nbytes=100)))
    labels = {"provider": "primary_cdn", "region": cfg.cdn.providers["primary_cdn"].regions[0]}
    assert reg.get_sample_value("cdn_cache_hit_ratio", {**labels, "content_type": "hls_segments"}) == 0.75
    assert reg.get_sample_value("cdn_bandwidth_usage_total", labels) == 2100
    timing = {**labels, "edge_location": f"127.0.0.1:{cfg.cdn.providers['primary_cdn'].edge_port}"}
    assert reg.get_sample_value("cdn_response_time_count", timing) == 4      # refused requests are not timed
    assert reg.get_sample_value("cdn_response_time_sum", timing) == pytest.approx(0.08)
    for name in ("cdn_cache_hit_ratio", "cdn_bandwidth_usage", "cdn_response_time"):
        family = next(f for f in reg.collect() if f.name == name)
        assert set(family.samples[0].labels) - {"le"} == set(cfg.metrics[name].labels)


# ------------------------------------------------------------ purge patterns

KEYS = ["/hls/v1/master.m3u8", "/hls/v1/720p/playlist.m3u8", "/hls/v1/720p/seg_001.ts", "/hls/v10/master.m3u8",
        "/thumbnails/v1/poster.jpg", "/hls/v2/master.m3u8"]


def test_seed_default_patterns_cover_one_video_only():
    assert matching_keys("/hls/v1/*", KEYS) == sorted(KEYS[:3])
    assert matching_keys("/thumbnails/v1/*", KEYS) == ["/thumbnails/v1/poster.jpg"]
    assert matching_keys("/videos/*/v1*", KEYS) == []
    assert matching_keys("/hls/v1/master.m3u8", KEYS) == ["/hls/v1/master.m3u8"]
    assert matching_keys("/hls/*/master.m3u8", KEYS) == ["/hls/v1/master.m3u8", "/hls/v10/master.m3u8",
                                                         "/hls/v2/master.m3u8"]
    assert matching_keys("/hls/v[1]/*", KEYS + ["/hls/v[1]/x.ts"]) == ["/hls/v[1]/x.ts"]   # no glob classes


def test_cache_file_location_follows_nginx_levels(tmp_path):
    """levels=1:2: /hls/3a7a…/480p/seg_002.ts lives at 3/6f/02195468244fcf4a1064a6dcd27126f3 (seen on a real edge)."""
    key = "/hls/3a7a561d9e3b4814923577a683b6fb10/480p/seg_002.ts"
    assert cache_file(tmp_path, key) == tmp_path / "3" / "6f" / "02195468244fcf4a1064a6dcd27126f3"


def test_cache_files_are_read_for_their_key(tmp_path):
    d = tmp_path / "c" / "a" / "bc"
    d.mkdir(parents=True)
    (d / "0123abc").write_bytes(b"\x05\x00binaryheader\nKEY: /hls/v1/master.m3u8\nHTTP/1.1 200 OK\r\n")
    (d / "garbage").write_bytes(b"no key here")
    assert [k for k, _ in cached_entries(tmp_path / "c")] == ["/hls/v1/master.m3u8"]
    assert list(cached_entries(tmp_path / "nothing")) == []


# ------------------------------------------------------------ warming walk

MASTER = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720
720p/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1000000,RESOLUTION=854x480
480p/playlist.m3u8
"""
MEDIA = """#EXTM3U
#EXT-X-KEY:METHOD=AES-128,URI="http://127.0.0.1:18000/v1/keys/v1",IV=0x00
#EXT-X-MAP:URI="init.mp4"
#EXTINF:10.0,
seg_000.m4s
#EXTINF:10.0,
seg_001.m4s
#EXT-X-ENDLIST
"""


def test_playlist_uris_skip_key_uris():
    assert playlist_uris(MASTER) == ["720p/playlist.m3u8", "480p/playlist.m3u8"]
    assert playlist_uris(MEDIA) == ["init.mp4", "seg_000.m4s", "seg_001.m4s"]


def test_relative_uris_stay_inside_the_video():
    assert resolve_in_scope("/hls/v1/master.m3u8", "720p/playlist.m3u8") == "/hls/v1/720p/playlist.m3u8"
    assert resolve_in_scope("/hls/v1/720p/playlist.m3u8", "seg_000.m4s") == "/hls/v1/720p/seg_000.m4s"
    assert resolve_in_scope("/hls/v1/720p/playlist.m3u8", "../../v2/master.m3u8") is None
    assert resolve_in_scope("/hls/v1/720p/playlist.m3u8", "../../../keys/v1/key.bin") is None
    assert resolve_in_scope("/hls/v1/master.m3u8", "http://elsewhere/x.ts") is None


# ------------------------------------------------------------ nginx configuration

def test_nginx_config_carries_the_seeds_lifetimes_and_the_edge_key(cfg, tmp_path):
    text = render_config(cfg, "primary_cdn", tmp_path, secret=b"k" * 32)
    rules = cfg.cdn.caching_rules
    assert f"proxy_cache_valid 200 {int(rules['hls_playlists'].cache_duration)}s;" in text
    assert f"proxy_cache_valid 200 {int(rules['hls_segments'].cache_duration)}s;" in text
    assert f"proxy_cache_valid 200 {int(rules['thumbnails'].cache_duration)}s;" in text
    assert f"listen 127.0.0.1:{cfg.cdn.providers['primary_cdn'].edge_port};" in text
    assert "secure_link_md5" in text and "proxy_cache_purge" in text
    assert "k" * 32 not in text                        # only derived keys reach nginx
    assert f'proxy_set_header Referer "{origin_token(b"k" * 32)}";' in text
    statement = edge_read_policy_statement(cfg.object_storage.bucket, b"k" * 32)
    assert statement["Action"] == ["s3:GetObject"]
    assert statement["Resource"] == [f"arn:aws:s3:::{cfg.object_storage.bucket}/hls/*",
                                     f"arn:aws:s3:::{cfg.object_storage.bucket}/thumbnails/*",
                                     f"arn:aws:s3:::{cfg.object_storage.bucket}/videos/*"]
    assert statement["Condition"] == {"StringEquals": {"aws:Referer": origin_token(b"k" * 32)}}
    assert "proxy_pass http://shield$object;" in text                  # an edge asks the shield, never S3
    assert f"server 127.0.0.1:{cfg.cdn.shield.shield_port};" in text
    assert f"proxy_cache_valid 200 {int(rules['video_files'].cache_duration)}s;" in text    # the MP4
    served_suffixes = re.findall(r"\\.\(\?:([a-z0-9|\\.]+)\)", text)
    assert served_suffixes and not any("key" in s.split("|") for s in served_suffixes)   # keys never via an edge
    for hidden in ("Seaweed-X-Amz-Owner", "Seaweed-X-Amz-ETag", "x-amz-request-id"):
        assert f"proxy_hide_header {hidden};" in text


def test_nginx_config_carries_the_edge_protection_thresholds(cfg, tmp_path):
    text = render_config(cfg, "primary_cdn", tmp_path, secret=b"k" * 32)
    guard = cfg.cdn.protection
    assert f"rate={guard.requests_per_second}r/s;" in text
    assert f"limit_req zone=clients burst={guard.burst} nodelay;" in text
    assert f"limit_conn client_conns {guard.connections_per_client};" in text
    assert f"limit_req_status {guard.refused_status};" in text
    assert f"large_client_header_buffers {guard.large_header_buffers} {guard.large_header_buffer_size};" in text
    assert "proxy_pass_request_body off;" in text and "$1? last;" in text         # no body, no query string
    assert f"client_max_body_size {guard.max_body};" in text


def test_shield_config_reads_s3_for_the_origin_level(cfg, tmp_path):
    text = render_shield_config(cfg, tmp_path, secret=b"k" * 32)
    assert f"listen 127.0.0.1:{cfg.cdn.shield.shield_port};" in text
    assert f"proxy_pass http://origin/{cfg.object_storage.bucket}$object;" in text
    assert f'if ($http_referer != "{origin_token(b"k" * 32)}") {{ return 403; }}' in text
    assert f"proxy_cache_valid 200 {int(cfg.cdn.shield.ttl)}s;" in text             # 7 d, the MP4 and thumbnails
    assert f"proxy_cache_valid 200 {int(cfg.cdn.caching_rules['hls_playlists'].cache_duration)}s;" in text
    assert "k" * 32 not in text


# ------------------------------------------------------------ popularity and health

def test_popularity_crosses_once_past_the_configured_count(cfg):
    n = cfg.caching.popular_view_count
    crossings = [c for c in range(n + 5) if crossed_popularity(c, c + 1, cfg.caching)]
    assert crossings == [n]                            # seed: view_count > 1000


def test_edge_health_probes_once_per_cache_period(cfg, monkeypatch):
    import framelog.sinks.edges.health as eh

    assert eh.probe("http://127.0.0.1:1/healthz", 0.2) is False          # nothing listens on port 1
    now = [0.0]
    health = EdgeHealth(cfg.cdn, cfg.stack.host, clock=lambda: now[0], cache_seconds=2.0)
    calls = []
    primary_port = cfg.cdn.providers["primary_cdn"].edge_port
    monkeypatch.setattr(eh, "probe", lambda url, timeout: calls.append(url) or f":{primary_port}/" in url)
    assert health.healthy() == {"primary_cdn": True, "secondary_cdn": False}
    assert health.is_healthy("primary_cdn") and not health.is_healthy("nope")
    assert len(calls) == 2
    now[0] = 2.5
    health.healthy()
    assert len(calls) == 4


def test_a_view_handled_again_after_a_restart_is_not_counted_twice():
    first = count_view(0, 40)                       # a video's first view, at offset 40 of its partition
    assert first is not None and (first.before, first.after) == (0, 1)
    second = count_view(first.value, 41)
    assert second is not None and second.after == 2
    assert count_view(second.value, 41) is None     # the same record again: its table write had landed
    assert count_view(second.value, 40) is None
    legacy = count_view(7, 3)                       # a bare count from before the offset was kept
    assert legacy is not None and (legacy.before, legacy.after, legacy.value) == (7, 8, {"count": 8, "offset": 3})


class _FlakyCache:
    """An edge that cannot be reached for its first ``down`` calls."""

    def __init__(self, key, down=0):
        self.provider_key, self.down, self.calls = key, down, []

    def _result(self, cls, what):
        self.calls.append(what)
        result = cls(self.provider_key)
        if len(self.calls) <= self.down:
            result.errors.append("connection refused")
            result.unavailable.append(what)
        return result

    def purge(self, paths):
        from framelog.sinks.edges.cache_commands import PurgeResult
        return self._result(PurgeResult, "purge")

    def warm(self, video_id, paths):
        from framelog.sinks.edges.cache_commands import WarmResult
        return self._result(WarmResult, "warm")


def _commands(cfg, retry_for, **caches):
    from framelog.core.backoff import Backoff
    from framelog.pipeline.agents.cdn import CdnCommands
    shield = caches.pop("shield", _FlakyCache("origin-shield"))
    return CdnCommands(cfg.caching, caches.values(), shield, retry_for=retry_for,
                       backoff=Backoff(0.01, 0.01, jitter=0.0))


def test_a_command_waits_for_an_edge_that_is_restarting_instead_of_skipping_it(cfg):
    import asyncio
    edge, other = _FlakyCache("p", down=2), _FlakyCache("s")
    commands = _commands(cfg, 5.0, p=edge, s=other)
    missed = asyncio.run(commands.handle("CacheWarm", {"video_id": "a" * 32, "paths": [], "providers": [],
                                                      "trigger": "video_upload_complete"}))
    assert missed == []
    assert edge.calls == ["purge", "purge", "purge", "warm"]      # tried again until it answered
    assert other.calls == ["purge", "warm"]                          # the others once


def test_a_shield_not_reached_purges_every_edge_again_after_it(cfg):
    import asyncio
    shield, edge = _FlakyCache("origin-shield", down=1), _FlakyCache("p")
    commands = _commands(cfg, 5.0, shield=shield, p=edge)
    assert asyncio.run(commands.handle("CacheInvalidate", {"video_id": "a" * 32, "paths": [], "providers": []})) == []
    assert shield.calls == ["purge", "purge"] and edge.calls == ["purge", "purge"]


def test_an_edge_that_never_comes_back_is_named_for_the_dead_letter(cfg):
    import asyncio
    commands = _commands(cfg, 0.05, p=_FlakyCache("p", down=10**6), s=_FlakyCache("s"))
    missed = asyncio.run(commands.handle("CacheWarm", {"video_id": "a" * 32, "paths": [], "providers": ["p", "s"],
                                                      "trigger": "high_view_count"}))
    assert missed == ["p"]


@pytest.mark.parametrize("exc,retry", [
    (httpx.ConnectError("refused"), True), (httpx.ReadTimeout("slow"), True),
    (httpx.HTTPStatusError("bad gateway", request=httpx.Request("GET", "http://e/"),
                           response=httpx.Response(502)), True),
    (httpx.HTTPStatusError("not found", request=httpx.Request("GET", "http://e/"),
                           response=httpx.Response(404)), False),
    (ValueError("not an object path"), False)])
def test_only_an_edge_that_did_not_answer_is_tried_again(exc, retry):
    from framelog.sinks.edges.cache_commands import is_unavailable
    assert is_unavailable(exc) is retry
