"""The progressive MP4 is downloadable: the stream API hands its signed edge URL (the seed's CDN path
``videos/<yyyy>/<mm>/<quality>/<id>.mp4``) to whoever may watch, and the edges serve it, ranges included.

The video is published as delivery_api does (a real upload through the API,
then the pipeline's objects and events); its MP4 object is a real clip made
with ffmpeg, so what comes back through the edges can be decoded.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from framelog.processors import cache_control as cc
from framelog.processors.cdn_routing import default_invalidation_paths
from framelog.processors.edge_signing import edge_signature
from framelog.processors.media import ffmpeg_commands as fc
from framelog.sinks.edges.cache_commands import edge_caches, shield_cache
from framelog.sinks.object_store import ObjectStore
from tests.integration.support.decoding import assert_decodes
from tests.integration.support.delivery_api import make_app, published, stream_of, viewer_tokens
from tests.integration.support.edges import cache_settings

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024              # a player's range size here: the clip takes several
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def client(stack, config):
    with TestClient(make_app(config)) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(config):
    return viewer_tokens(config)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("mp4") / "clip.mp4"
    fc.run_ffmpeg(fc.sample_clip_args(out, width=320, height=240, duration=4, fps=25))
    return out.read_bytes()


def publish_with_mp4(client, config, tokens, visibility: str, clip: bytes, **params: str) -> tuple[str, str]:
    """A published video whose MP4 (at the key its AssetPublished names) is the real clip."""
    vid = published(client, config, tokens, visibility, **params)
    key = f"videos/2026/12/720p/{vid}.mp4"                  # what delivery_api.publish announces
    ObjectStore(config.object_storage, config.stack.state_dir).put_bytes(key, clip, cc.content_type_for_key(key),
                                  cc.cache_control_for_key(key, config.cdn.caching_rules))
    return vid, key


def get(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=TIMEOUT)


def test_public_mp4_downloads_through_both_edges_by_ranges_and_decodes(client, config, tokens, secret, clip,
                                                                     tmp_path):
    vid, key = publish_with_mp4(client, config, tokens, "public", clip)
    s = stream_of(client, vid, tokens["anon"]).json()
    url = s["download_url"]
    path = urlsplit(url).path
    _, prefix, sig, expires, *rest = path.split("/")      # /s/<sig>/<expires>/videos/2026/12/720p/<id>.mp4
    assert (prefix, "/".join(rest)) == ("s", key)
    assert sig == edge_signature(f"/{key}", int(expires), secret)   # one signature, one file
    assert urlsplit(url).port == config.cdn.providers[s["cdn"]["primary"]].edge_port
    assert urlsplit(s["fallback"]["download_url"]).port == config.cdn.providers[s["cdn"]["fallback"]].edge_port

    # a first range on a cold edge: 206 with exactly those bytes, the video_files cache rule, no store headers
    first = get(url, Range="bytes=0-1023")
    assert first.status_code == 206, first.text[:200]
    assert first.headers["Content-Range"] == f"bytes 0-1023/{len(clip)}"
    assert first.content == clip[:1024]
    assert first.headers["X-Cache-Status"] == "MISS"
    assert first.headers["Cache-Control"] == cc.cache_control_for_key(key, config.cdn.caching_rules)
    assert first.headers["Content-Type"] == "video/mp4"
    assert not [h for h in first.headers if h.lower().startswith(("seaweed-", "x-amz-"))], dict(first.headers)

    # the whole file, range after range (as a player seeks), now from the edge's cache, decodes
    parts = []
    for start in range(0, len(clip), CHUNK):
        r = get(url, Range=f"bytes={start}-{min(start + CHUNK, len(clip)) - 1}")
        assert (r.status_code, r.headers["X-Cache-Status"]) == (206, "HIT"), (start, r.status_code)
        parts.append(r.content)
    assert b"".join(parts) == clip
    out = tmp_path / "downloaded.mp4"
    out.write_bytes(b"".join(parts))
    assert_decodes(out)                                       # every frame decodes
    probed = fc.ffprobe_json(out)
    assert {st["codec_type"] for st in probed["streams"]} == {"video", "audio"}

    whole = get(s["fallback"]["download_url"])                 # the other edge, no range: the whole file
    assert (whole.status_code, whole.content) == (200, clip)

    # the seed's invalidation paths (/videos/*/<id>*) purge it from the shield and both edges
    edges = cache_settings(config)
    caches = [shield_cache(edges, secret=secret), *edge_caches(edges, secret=secret)]
    purged = {c.provider_key: c.purge(default_invalidation_paths(vid)) for c in caches}
    assert {p: (r.purged, r.errors) for p, r in purged.items()} == {p: ([f"/{key}"], []) for p in purged}
    assert get(url, Range="bytes=0-9").headers["X-Cache-Status"] == "MISS"


def test_mp4_of_a_private_video_only_for_who_may_watch(client, config, tokens, clip):
    vid, key = publish_with_mp4(client, config, tokens, "private", clip, workspace="ws-1")
    for stranger in ("anon", "eve"):
        r = stream_of(client, vid, tokens[stranger])
        assert r.status_code == 403 and "download_url" not in r.json()
    owner = stream_of(client, vid, tokens["alice"]).json()
    assert get(owner["download_url"], Range="bytes=0-99").content == clip[:100]
    member = stream_of(client, vid, tokens["bob"]).json()           # the workspace may watch: it gets one too
    assert member["access"]["reason"] == "workspace" and get(member["download_url"]).content == clip

    base = f"http://{config.stack.host}:{urlsplit(owner['download_url']).port}"
    _, _, sig, expires, *_ = urlsplit(owner["download_url"]).path.split("/")
    other_vid, other_key = publish_with_mp4(client, config, tokens, "private", clip)
    refused = {
        "unsigned": f"{base}/{key}",
        "another video's mp4 with this signature": f"{base}/s/{sig}/{expires}/{other_key}",
        "another quality's path": f"{base}/s/{sig}/{expires}/videos/2026/12/1080p/{vid}.mp4",
        "the storage layout with a day": f"{base}/s/{sig}/{expires}/videos/2026/12/01/720p/{vid}.mp4",
        "this signature on the video's hls": f"{base}/s/{sig}/{expires}/hls/{vid}/master.m3u8",
    }
    for what, url in refused.items():
        assert get(url).status_code == 403, what
