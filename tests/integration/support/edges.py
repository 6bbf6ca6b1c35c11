"""The nginx edges as tests drive them: a fake HLS set put straight into the bucket, signed URLs, plain fetches.

A fake video is a small HLS set (playlists and a few bytes per segment) with
the Cache-Control cdn_upload gives each file type: the edges do not care what
the bytes are. The stack's signing secret is the ``secret`` fixture (tests/conftest.py).
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request

from framelog.processors import cache_control as cc
from framelog.processors.edge_signing import signed_edge_url
from framelog.sinks.edges.cache_commands import EdgeCacheSettings
from framelog.sinks.s3 import s3_client

RENDITIONS = ("720p", "480p")
SEGMENTS = 5


def put_fake_video(config, video_id: str) -> list[str]:
    """Master, rendition playlists, segments, a thumbnail and an AES key, as cdn_upload lays them out."""
    objects: dict[str, bytes] = {}
    master = ["#EXTM3U", "#EXT-X-VERSION:6"]
    for i, name in enumerate(RENDITIONS):
        master += [f"#EXT-X-STREAM-INF:BANDWIDTH={(i + 1) * 1000000}", f"{name}/playlist.m3u8"]
        media = ["#EXTM3U", "#EXT-X-TARGETDURATION:10",
                 f'#EXT-X-KEY:METHOD=AES-128,URI="http://127.0.0.1:1/v1/keys/{video_id}"']
        for n in range(SEGMENTS):
            media += ["#EXTINF:10.0,", f"seg_{n:03d}.ts"]
            objects[f"hls/{video_id}/{name}/seg_{n:03d}.ts"] = f"{video_id}/{name}/{n}".encode() * 50
        objects[f"hls/{video_id}/{name}/playlist.m3u8"] = ("\n".join(media + ["#EXT-X-ENDLIST"]) + "\n").encode()
    objects[f"hls/{video_id}/master.m3u8"] = ("\n".join(master) + "\n").encode()
    objects[f"thumbnails/{video_id}/poster.jpg"] = b"\xff\xd8fakejpeg"
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    for key, body in objects.items():
        h = cc.headers_for_key(key, config.cdn.caching_rules)
        s3.put_object(Bucket=config.object_storage.bucket, Key=key, Body=body, ContentType=h["Content-Type"],
                      CacheControl=h["Cache-Control"])
    s3.put_object(Bucket=config.object_storage.bucket, Key=f"keys/{video_id}/key.bin", Body=b"k" * 16,
                  CacheControl=cc.NO_STORE)
    return sorted(objects)


def fetch(url: str, method: str = "GET", data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; an HTTP error status is an answer, not an exception."""
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def url(config, secret, path: str, provider: str = "primary_cdn", **kw) -> str:
    """A signed edge URL of ``path`` for ``provider``, valid from now (or ``now=``)."""
    return signed_edge_url(provider, path, config.cdn, config.stack.host, config.security, secret=secret,
                           now=kw.pop("now", time.time()), **kw)


def cache_settings(config) -> EdgeCacheSettings:
    """The sections an EdgeCache reads, from the test's configuration."""
    return EdgeCacheSettings(config.cdn, config.stack, config.security, config.caching)
