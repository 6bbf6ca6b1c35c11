"""The two nginx edges on the real stack: origin reads, cache lifetimes, signed paths, purge,
warm, health and fallback, and the cdn consumer group (commands, popularity warming, metrics).

A video here is a small fake HLS set put straight into the bucket (playlists
and a few bytes per segment) with the Cache-Control cdn_upload gives each
file type: the edges do not care what the bytes are.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from framelog.core.ids import new_video_id
from framelog.pipeline.worker import CDN, POPULARITY, groups
from framelog.processors import cache_control as cc
from framelog.processors.cdn_routing import edge_base_url, route, stream_urls
from framelog.processors.edge_signing import origin_token
from framelog.schemas.events import new_event
from framelog.sinks.edges.cache_commands import EdgeCache, cached_keys
from framelog.sinks.edges.health import EdgeHealth
from framelog.sinks.edges.protocol import cache_dir, shield_dir
from framelog.sinks.s3 import s3_client
from framelog.stack.process import wait_until
from framelog.stack.services import WorkerService
from framelog.streams import topics
from framelog.streams.lag import group_lag
from framelog.streams.producer import EventProducer
from tests.integration.support import running
from tests.integration.support.edges import RENDITIONS, cache_settings, fetch, put_fake_video, url

pytestmark = pytest.mark.integration

WAIT = 60.0
CATCH_UP = 300.0        # a new popularity group first counts every view already on playback.events


# ------------------------------------------------------------ helpers

@pytest.fixture()
def video(stack, config) -> str:
    vid = new_video_id()
    put_fake_video(config, vid)
    return vid


def keys_of(config, provider: str, video_id: str) -> set[str]:
    return {k for k in cached_keys(cache_dir(config.stack.state_dir, provider)) if f"/{video_id}/" in k}


def shield_keys_of(config, video_id: str) -> set[str]:
    return {k for k in cached_keys(shield_dir(config.stack.state_dir) / "cache") if f"/{video_id}/" in k}


# ------------------------------------------------------------ serving and caching

@pytest.mark.parametrize("provider", ["primary_cdn", "secondary_cdn"])
def test_edge_serves_the_origin_object_with_its_cache_control_then_from_cache(config, secret, video, provider):
    for path in (f"hls/{video}/master.m3u8", f"hls/{video}/720p/playlist.m3u8", f"hls/{video}/720p/seg_000.ts",
                 f"thumbnails/{video}/poster.jpg"):
        status, headers, body = fetch(url(config, secret, path, provider))
        assert status == 200, (path, body[:200])
        assert headers["X-Cache-Status"] == "MISS"
        assert headers["Cache-Control"] == cc.cache_control_for_key(path, config.cdn.caching_rules)
        assert headers["Content-Type"].startswith(cc.content_type_for_key(path).split(";")[0])
        assert headers["Access-Control-Allow-Origin"] == "*"
        status, headers, again = fetch(url(config, secret, path, provider))
        assert (status, headers["X-Cache-Status"], again) == (200, "HIT", body)
    assert (f"/hls/{video}/master.m3u8") in keys_of(config, provider, video)


def test_browser_requests_get_one_cors_answer_from_the_edge(config, secret, video):
    """The origin's own CORS headers (per Origin, with Vary) never pass the edge, cached or not."""
    for _ in range(2):                                     # MISS, then HIT
        req = urllib.request.Request(url(config, secret, f"hls/{video}/master.m3u8"),
                                     headers={"Origin": "http://127.0.0.1:1"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers.get_all("Access-Control-Allow-Origin") == ["*"]
            assert r.headers.get_all("Vary") is None
            assert r.headers.get_all("Access-Control-Allow-Methods") is None


def test_edge_refuses_unsigned_forged_expired_and_other_video_paths(config, secret, video):
    base = edge_base_url("primary_cdn", config.cdn, config.stack.host)
    good = url(config, secret, f"hls/{video}/master.m3u8")
    assert fetch(good)[0] == 200
    other = new_video_id()
    put_fake_video(config, other)
    sig, expires = good.split("/")[4:6]
    signed = f"{base}/s/{sig}/{expires}"
    forged = ("B" if sig[0] == "A" else "A") + sig[1:]
    refused = {
        "unsigned": f"{base}/hls/{video}/master.m3u8",
        "bucket path": f"{base}/{config.object_storage.bucket}/hls/{video}/master.m3u8",
        "expired": url(config, secret, f"hls/{video}/master.m3u8", now=time.time() - 120, ttl=60),
        "forged": f"{base}/s/{forged}/{expires}/hls/{video}/master.m3u8",
        "later expiry": f"{base}/s/{sig}/{int(expires) + 3600}/hls/{video}/master.m3u8",
        "other video": f"{signed}/hls/{other}/master.m3u8",
        "thumbnails with an hls signature": f"{signed}/thumbnails/{video}/poster.jpg",
        "key object": f"{signed}/keys/{video}/key.bin",
        "dot segments": f"{signed}/hls/{video}/../../hls/{other}/master.m3u8",
        "query-string signature": f"{base}/hls/{video}/master.m3u8?sig={sig}&exp={expires}",
    }
    for what, u in refused.items():
        status, headers, _ = fetch(u)
        assert status == 403, what
        assert headers.get("Access-Control-Allow-Origin") == "*", what      # a player can read the refusal
    req = urllib.request.Request(good, method="OPTIONS", headers={
        "Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    with urllib.request.urlopen(req, timeout=10) as r:                      # CORS preflight
        assert r.status == 204 and r.headers["Access-Control-Allow-Headers"] == "authorization"
        assert "GET" in r.headers["Access-Control-Allow-Methods"]
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    s3.put_object(Bucket=config.object_storage.bucket, Key=f"hls/{video}/stray.key", Body=b"k" * 16)
    assert fetch(url(config, secret, f"hls/{video}/stray.key"))[0] == 403          # a key never leaves via an edge
    assert fetch(good, "POST", b"x")[0] == 403
    assert fetch(good, "PUT", b"x")[0] == 403
    assert fetch(good, "DELETE")[0] == 403
    assert fetch(f"{base}/_purge/hls/{video}/master.m3u8")[0] == 403        # purge needs the edge's token


def test_origin_serves_the_edges_only_and_only_the_served_prefixes(config, secret, video):
    origin = f"{config.object_storage.endpoint_url}/{config.object_storage.bucket}"
    edge = {"Referer": origin_token(secret)}
    assert fetch(f"{origin}/hls/{video}/master.m3u8")[0] == 403              # no token: not for the world
    assert fetch(f"{origin}/hls/{video}/master.m3u8", headers={"Referer": "x"})[0] == 403
    assert fetch(f"{origin}/hls/{video}/master.m3u8", headers=edge)[0] == 200
    assert fetch(f"{origin}/thumbnails/{video}/poster.jpg", headers=edge)[0] == 200
    assert fetch(f"{origin}/keys/{video}/key.bin", headers=edge)[0] == 403
    assert fetch(f"{origin}/?list-type=2", headers=edge)[0] == 403
    assert fetch(f"{origin}/hls/{video}/evil.m3u8", "PUT", b"x", headers=edge)[0] == 403
    assert fetch(f"{origin}/hls/{video}/master.m3u8", "DELETE", headers=edge)[0] == 403


# ------------------------------------------------------------ purge and warm

def test_purge_removes_cached_objects_of_one_video(config, secret, video):
    keep = new_video_id()
    put_fake_video(config, keep)
    seg = f"hls/{video}/720p/seg_001.ts"
    for path in (seg, f"hls/{video}/master.m3u8", f"thumbnails/{video}/poster.jpg", f"hls/{keep}/master.m3u8"):
        fetch(url(config, secret, path))
        assert fetch(url(config, secret, path))[1]["X-Cache-Status"] == "HIT"
    edge = EdgeCache(cache_settings(config), "primary_cdn", secret=secret)
    result = edge.purge([f"/hls/{video}/*", f"/thumbnails/{video}/*", f"/videos/*/{video}*"])
    assert set(result.purged) == {f"/{seg}", f"/hls/{video}/master.m3u8", f"/thumbnails/{video}/poster.jpg"}
    assert not result.errors
    assert keys_of(config, "primary_cdn", video) == set()
    assert fetch(url(config, secret, seg))[1]["X-Cache-Status"] == "MISS"
    assert fetch(url(config, secret, f"hls/{keep}/master.m3u8"))[1]["X-Cache-Status"] == "HIT"
    assert edge.purge_key(f"/hls/{keep}/master.m3u8") is True
    assert edge.purge_key(f"/hls/{keep}/master.m3u8") is False


def test_warm_makes_the_first_viewer_request_a_hit(config, secret, video):
    n = config.caching.warm_first_segments
    result = EdgeCache(cache_settings(config), "secondary_cdn", secret=secret).warm(video)
    assert not result.errors
    assert set(result.fetched) == ({f"/hls/{video}/master.m3u8"}
                                   | {f"/hls/{video}/{r}/playlist.m3u8" for r in RENDITIONS}
                                   | {f"/hls/{video}/{r}/seg_{i:03d}.ts" for r in RENDITIONS for i in range(n)})
    for r in RENDITIONS:
        assert fetch(url(config, secret, f"hls/{video}/{r}/seg_000.ts", "secondary_cdn"))[1]["X-Cache-Status"] == "HIT"
        assert fetch(url(config, secret, f"hls/{video}/{r}/seg_{n:03d}.ts", "secondary_cdn"))[1][
            "X-Cache-Status"] == "MISS"
    assert fetch(url(config, secret, f"hls/{video}/master.m3u8", "secondary_cdn"))[1]["X-Cache-Status"] == "HIT"


# ------------------------------------------------------------ health and fallback

def test_stopped_edge_is_unhealthy_and_new_urls_fall_back(stack, config, secret, video):
    primary = next(e for e in stack.edges if e.provider_key == "primary_cdn")
    path = f"hls/{video}/master.m3u8"
    fetch(url(config, secret, path))
    assert f"/{path}" in keys_of(config, "primary_cdn", video)
    health = EdgeHealth(config.cdn, config.stack.host, cache_seconds=0)
    ladder = [q.name for q in config.hls.quality_levels]
    assert health.healthy() == {"primary_cdn": True, "secondary_cdn": True}
    urls = stream_urls(video, "US", config.cdn, config.stack.host, ladder, healthy=health.is_healthy)
    assert urls.route.primary == "primary_cdn"
    primary.stop()
    try:
        assert health.healthy() == {"primary_cdn": False, "secondary_cdn": True}
        urls = stream_urls(video, "US", config.cdn, config.stack.host, ladder, healthy=health.is_healthy)
        assert (urls.route.primary, urls.route.failed_over) == ("secondary_cdn", True)
        assert urls.primary.master.startswith(edge_base_url("secondary_cdn", config.cdn, config.stack.host))
        fallback = url(config, secret, path, "secondary_cdn")
        assert fetch(fallback)[0] == 200
        # a purge while the edge is down removes its files, so it does not come back stale
        edge = EdgeCache(cache_settings(config), "primary_cdn", secret=secret)
        assert edge.purge([f"/hls/{video}/*"]).purged == [f"/{path}"]
    finally:
        primary.start()
    assert health.healthy()["primary_cdn"] is True
    assert fetch(url(config, secret, path))[1]["X-Cache-Status"] == "MISS"


# ------------------------------------------------------------ the cdn consumer group

class GroupWorker(WorkerService):
    """``framelog worker --stage <group>`` alone (the other groups are not needed here)."""

    def __init__(self, config, group: str):
        self.name = f"worker-{group}"
        self.subcommand = ("worker", "--stage", group)
        self.group = group
        super().__init__(config)

    def check_health(self) -> None:
        from confluent_kafka import ConsumerGroupState

        from framelog.streams.admin import admin_client

        name = f"framelog-{self.group}"
        # keep a reference: futures die with their client
        admin = admin_client(self.config.kafka, self.config.stack)
        desc = admin.describe_consumer_groups([name], request_timeout=5)[name].result(10)
        if desc.state != ConsumerGroupState.STABLE or not desc.members:
            raise RuntimeError(f"{name} is {desc.state.name.lower()}")


def _group_worker(config, group: str):
    with running(GroupWorker(config, group), timeout=120) as worker:
        yield worker


@pytest.fixture(scope="module")
def cdn_worker(stack, config):
    yield from _group_worker(config, CDN)


@pytest.fixture(scope="module")
def popularity_worker(stack, config, cdn_worker):
    yield from _group_worker(config, POPULARITY)


@pytest.fixture(scope="module")
def producer(config):
    p = EventProducer(config.streams)
    yield p
    p.close()


def _popularity_lag(config) -> int:
    return group_lag(config.kafka, config.stack, f"framelog-{POPULARITY}", topics.PLAYBACK_EVENTS)


def _send(producer, name: str, video_id: str, **fields) -> None:
    producer.send(topics.CDN_COMMANDS, name, new_event(name, video_id=video_id, **fields), key=video_id)
    producer.flush()


def test_commands_purge_and_warm_both_edges(config, secret, video, cdn_worker, producer):
    both = ("primary_cdn", "secondary_cdn")
    _send(producer, "CacheWarm", video, paths=[f"/thumbnails/{video}/poster.jpg"], providers=[],
          trigger="video_upload_complete")
    n = config.caching.warm_first_segments
    wanted = {f"/hls/{video}/master.m3u8", f"/thumbnails/{video}/poster.jpg",
              *(f"/hls/{video}/{r}/seg_{i:03d}.ts" for r in RENDITIONS for i in range(n))}
    assert wait_until(lambda: all(wanted <= keys_of(config, p, video) for p in both), WAIT), \
        {p: keys_of(config, p, video) for p in both}
    for p in both:
        assert fetch(url(config, secret, f"hls/{video}/720p/seg_000.ts", p))[1]["X-Cache-Status"] == "HIT"
    assert wanted <= shield_keys_of(config, video)              # the warm went through the origin shield

    _send(producer, "CacheInvalidate", video, paths=[], providers=[], reason="deleted")
    assert wait_until(lambda: not any(keys_of(config, p, video) for p in both), WAIT)
    assert shield_keys_of(config, video) == set()               # ... and the invalidation purged it too
    assert fetch(url(config, secret, f"hls/{video}/master.m3u8"))[1]["X-Cache-Status"] == "MISS"


def test_popular_video_is_warmed_once_when_views_cross_the_threshold(config, video, popularity_worker,
                                                                     producer):
    views = config.caching.popular_view_count + 1          # seed: view_count > 1000
    for i in range(views):
        producer.send(topics.PLAYBACK_EVENTS, "PlaybackEvent", new_event(
            "PlaybackEvent", session_id=f"s{i}", viewer_id=f"viewer{i}", video_id=video,
            type="view_start" if i % 2 else "video_view"), key=video)
    producer.flush()
    assert wait_until(lambda: _popularity_lag(config) == 0, CATCH_UP), \
        "the popularity group did not catch up with playback.events"
    assert wait_until(lambda: f"/hls/{video}/master.m3u8" in keys_of(config, "primary_cdn", video)
                      and f"/hls/{video}/master.m3u8" in keys_of(config, "secondary_cdn", video), WAIT)
    popularity_worker.stop()                               # the count survives a restart (table changelog) ...
    popularity_worker.start(timeout=120)
    for i in range(5):                                     # ... so more views warm nothing again
        producer.send(topics.PLAYBACK_EVENTS, "PlaybackEvent", new_event(
            "PlaybackEvent", session_id=f"t{i}", viewer_id=f"viewer{i}", video_id=video, type="view_start"), key=video)
    producer.flush()
    # the restarted worker first rejoins the group and restores its table: the catch-up deadline again
    assert wait_until(lambda: _popularity_lag(config) == 0, CATCH_UP)
    from tests.integration.support.pipeline import read_topic

    warms = [r for name, r in read_topic(config, topics.CDN_COMMANDS, video) if name == "CacheWarm"]
    assert [w["trigger"] for w in warms if w["trigger"] == "high_view_count"] == ["high_view_count"]
    # the same burst (no viewer country) trends once, on the edge of the default route
    trending = [w for w in warms if w["trigger"] == "trending_content"]
    assert [w["providers"] for w in trending] == [[config.cdn.default_route.primary]]


@pytest.mark.parametrize("country", ["DE", "JP"])
def test_a_video_trending_in_a_country_is_preloaded_on_the_edge_serving_it(config, video, popularity_worker,
                                                                          producer, country):
    edge = route(country, config.cdn).primary
    other = next(p for p in config.cdn.providers if p != edge)
    for i in range(config.caching.trending.min_views):       # min_views inside one window, from one country
        producer.send(topics.PLAYBACK_EVENTS, "PlaybackEvent", new_event(
            "PlaybackEvent", session_id=f"g{i}", viewer_id=f"geo{i}", video_id=video, type="view_start",
            country=country), key=video)
    producer.flush()
    assert wait_until(lambda: f"/hls/{video}/master.m3u8" in keys_of(config, edge, video), CATCH_UP), \
        f"{video} trending in {country} was not preloaded on {edge}"
    assert wait_until(lambda: _popularity_lag(config) == 0, CATCH_UP)
    from tests.integration.support.pipeline import read_topic

    warms = [r for name, r in read_topic(config, topics.CDN_COMMANDS, video) if name == "CacheWarm"]
    assert [(w["trigger"], w["providers"]) for w in warms] == [("trending_content", [edge])]
    assert not keys_of(config, other, video)                  # the other region's edge was left alone


def test_edge_logs_become_the_seeds_cdn_metrics(config, secret, video, cdn_worker):
    path = f"hls/{video}/480p/seg_004.ts"
    for _ in range(4):
        fetch(url(config, secret, path))                   # MISS, then HITs
    port = config.stack.worker_metrics_port + groups(config.pipeline).index(CDN)
    region = config.cdn.providers["primary_cdn"].regions[0]

    def scraped() -> str:
        return fetch(f"http://{config.stack.host}:{port}/metrics")[2].decode()

    ratio = f'cdn_cache_hit_ratio{{content_type="hls_segments",provider="primary_cdn",region="{region}"}}'
    assert wait_until(lambda: ratio in scraped(), WAIT), scraped()[-2000:]
    text = scraped()
    assert f'cdn_bandwidth_usage_total{{provider="primary_cdn",region="{region}"}}' in text
    location = f"{config.stack.host}:{config.cdn.providers['primary_cdn'].edge_port}"
    assert f'cdn_response_time_bucket{{edge_location="{location}",le="0.001",provider="primary_cdn",' \
           f'region="{region}"}}' in text
    value = float(next(line.split()[-1] for line in text.splitlines() if line.startswith(ratio)))
    assert 0 < value < 1
