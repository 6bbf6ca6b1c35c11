"""Signed edge URLs (processors/edge_signing.py): shape, scope, expiry, refusals."""
import base64
import hashlib
import hmac
import re
from urllib.parse import urljoin

import pytest

from framelog.processors.edge_signing import (
    edge_secret,
    edge_signature,
    origin_token,
    parse_object_path,
    purge_token,
    scope_for,
    signed_edge_path,
    signed_edge_url,
)
from framelog.processors.tokens import _mac

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def _signed(provider: str, path: str, cfg, **kw) -> str:
    return signed_edge_url(provider, path, cfg.cdn, cfg.stack.host, cfg.security, **kw)


def _parts(url: str) -> tuple[str, int, str]:
    m = re.fullmatch(r"http://127\.0\.0\.1:\d+/s/([A-Za-z0-9_-]{22})/([0-9]+)(/.*)", url)
    assert m, url
    return m.group(1), int(m.group(2)), m.group(3)


def test_url_shape_puts_the_signature_in_the_path(cfg):
    url = _signed("primary_cdn", "hls/vid-1/master.m3u8", cfg, secret=SECRET, now=NOW)
    assert url.startswith(f"http://127.0.0.1:{cfg.cdn.providers['primary_cdn'].edge_port}/s/")
    sig, expires, path = _parts(url)
    assert path == "/hls/vid-1/master.m3u8" and "?" not in url
    assert expires == int(NOW + cfg.security.stream_url_ttl)


def test_signature_is_what_nginx_secure_link_md5_computes(cfg):
    """secure_link_md5 "$expires/$kind/$vid/ <edge secret>", base64url without padding."""
    sig, expires, _ = _parts(_signed("secondary_cdn", "/hls/abc/720p/seg_001.ts", cfg,
                                             secret=SECRET, now=NOW, ttl=60))
    key = hmac.new(SECRET, b"framelog.edge.v1", hashlib.sha256).hexdigest()
    digest = hashlib.md5(f"{expires}/hls/abc/ {key}".encode()).digest()
    assert sig == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert expires == int(NOW + 60)


def test_relative_urls_of_a_playlist_keep_a_valid_signature(cfg):
    """hls.js resolves renditions and segments against the playlist URL: same scope, same signature."""
    master = _signed("primary_cdn", "hls/v9/master.m3u8", cfg, secret=SECRET, now=NOW)
    rendition = urljoin(master, "720p/playlist.m3u8")
    segment = urljoin(rendition, "seg_003.ts")
    direct = _signed("primary_cdn", "hls/v9/720p/seg_003.ts", cfg, secret=SECRET, now=NOW)
    assert segment == direct


def test_scope_is_one_video_and_one_kind(cfg):
    a = _parts(_signed("primary_cdn", "hls/a/master.m3u8", cfg, secret=SECRET, now=NOW))[0]
    b = _parts(_signed("primary_cdn", "hls/b/master.m3u8", cfg, secret=SECRET, now=NOW))[0]
    t = _parts(_signed("primary_cdn", "thumbnails/a/poster.jpg", cfg, secret=SECRET, now=NOW))[0]
    assert len({a, b, t}) == 3
    assert scope_for("hls", "a") == "/hls/a/"
    assert edge_signature("/hls/a/", 5, SECRET) != edge_signature("/hls/a/", 6, SECRET)


@pytest.mark.parametrize("path", [
    "keys/v1/key.bin", "meta/v1/analysis.json", "uploads/v1/raw", "hls/v1", "hls/v1/", "hls/../keys/v1/key.bin",
    "hls/v1/../../keys/v1/k", "hls/v1/./master.m3u8", "hls/v 1/master.m3u8", "hls/v1/master.m3u8?x=1",
    "//hls/v1/master.m3u8", "hls/v1/a//b.ts", "", "hls/" + "x" * 65 + "/m.m3u8",
    # an MP4 only at the seed's CDN path, nothing else under videos/
    "videos/2026/1/720p/v1.mp4", "videos/2026/01/01/720p/v1.mp4", "videos/2026/01/720p/v1.mov",
    "videos/2026/01/720p/../v1.mp4", "videos/2026/01/720p/v1.mp4/x", "videos/v1/master.m3u8"])
def test_only_objects_under_a_videos_served_prefix_can_be_signed(cfg, path):
    with pytest.raises(ValueError):
        _signed("primary_cdn", path, cfg, secret=SECRET, now=NOW)


def test_an_mp4_signature_covers_its_one_cdn_path(cfg):
    o = parse_object_path("/videos/2026/01/720p/v_1.mp4")
    assert (o.kind, o.video_id, o.key, o.scope) == ("videos", "v_1", "videos/2026/01/720p/v_1.mp4",
                                                    "/videos/2026/01/720p/v_1.mp4")
    sig, expires, path = _parts(_signed("primary_cdn", o.key, cfg, secret=SECRET, now=NOW))
    assert path == o.scope
    assert sig == edge_signature(o.scope, int(expires), SECRET)
    other = _parts(_signed("primary_cdn", "videos/2026/01/480p/v_1.mp4", cfg, secret=SECRET, now=NOW))[0]
    assert other != sig


def test_parse_object_path():
    o = parse_object_path("/thumbnails/v_1/thumbs/t-001.jpg")
    assert (o.kind, o.video_id, o.rest, o.scope) == ("thumbnails", "v_1", "thumbs/t-001.jpg", "/thumbnails/v_1/")


def test_lifetime_and_secret_are_checked(cfg):
    with pytest.raises(ValueError):
        signed_edge_path("hls/v/master.m3u8", cfg.security, secret=SECRET, now=NOW, ttl=0)
    with pytest.raises(ValueError):
        signed_edge_path("hls/v/master.m3u8", cfg.security, secret=b"short", now=NOW)


def test_derived_keys_are_separate_from_the_token_secret():
    """The edge key and the purge token never equal each other or a token signature of the same secret."""
    assert len({edge_secret(SECRET), purge_token(SECRET), origin_token(SECRET)}) == 3
    assert SECRET.hex() not in (edge_secret(SECRET), purge_token(SECRET))
    assert edge_secret(SECRET) != _mac(SECRET, b"framelog.edge.v1")
    assert edge_secret(b"t" * 32) != edge_secret(SECRET)
