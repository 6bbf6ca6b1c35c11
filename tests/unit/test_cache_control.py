"""Cache-Control per file type, from the configured caching rules."""
import copy

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config
from framelog.processors.cache_control import (
    HLS_KEYS,
    NO_STORE,
    UNKNOWN_TYPE_CACHE_CONTROL,
    cache_control,
    cache_control_for_key,
    cache_levels_for,
    content_type_for_key,
    edge_ttl,
    file_type_for_key,
    headers_for_key,
    should_warm,
    warm_segment_count,
)


@pytest.mark.parametrize("key, file_type", [
    ("hls/abc/master.m3u8", "hls_playlists"),
    ("hls/abc/720p/playlist.m3u8", "hls_playlists"),
    ("hls/abc/720p/PLAYLIST.M3U8", "hls_playlists"),
    ("hls/abc/720p/segment_00001.ts", "hls_segments"),
    ("hls/abc/720p/chunk-3.m4s", "hls_segments"),
    ("hls/abc/audio/seg1.aac", "hls_segments"),
    ("videos/2025/03/1080p/abc.mp4", "video_files"),
    ("originals/abc.mp4", "video_files"),
    ("thumbnails/abc/poster.jpg", "thumbnails"),
    ("thumbnails/abc/poster.jpeg", "thumbnails"),
    ("thumbnails/abc/t_0001.png", "thumbnails"),
    ("thumbnails/abc/sprite.webp", "thumbnails"),
    ("thumbnails/abc/storyboard.vtt", "thumbnails"),
    ("prefix/thumbnails/abc/x.jpg", "thumbnails"),
    ("hls/abc/enc.key", HLS_KEYS),
    ("keys/abc/720p.key", HLS_KEYS),
    ("other/abc/poster.jpg", None),        # an image outside thumbnails/ is not a thumbnail
    ("thumbnails.jpg", None),
    ("hls/abc/subtitles/en-us/segment_00000.vtt", "hls_segments"),   # a WebVTT subtitles segment
    ("other/abc/subtitles.vtt", None),
    ("hls/abc/README", None),
    ("metadata/abc.json", None),
])
def test_file_type_for_key(key, file_type):
    assert file_type_for_key(key) == file_type


def test_cache_control_from_config(cfg):
    for file_type, rule in cfg.cdn.caching_rules.items():
        assert cache_control(file_type, cfg.cdn.caching_rules) == \
            f"public, max-age={int(rule.browser_cache)}, s-maxage={int(rule.cache_duration)}"


def test_cache_control_carries_the_seed_lifetimes(cfg):
    day = 86400
    assert cache_control("video_files", cfg.cdn.caching_rules) == f"public, max-age={7 * day}, s-maxage={30 * day}"
    assert cache_control("thumbnails", cfg.cdn.caching_rules) == f"public, max-age={day}, s-maxage={7 * day}"
    assert cache_control("hls_playlists", cfg.cdn.caching_rules) == "public, max-age=300, s-maxage=3600"
    assert cache_control("hls_segments", cfg.cdn.caching_rules) == f"public, max-age={day}, s-maxage={day}"


def test_keys_are_never_cached(cfg):
    assert cache_control(HLS_KEYS, cfg.cdn.caching_rules) == NO_STORE == "private, no-store"
    assert cache_control_for_key("hls/abc/enc.key", cfg.cdn.caching_rules) == NO_STORE
    assert edge_ttl(HLS_KEYS, cfg.cdn.caching_rules) == 0


def test_unknown_file_type(cfg):
    with pytest.raises(KeyError, match="subtitles"):
        cache_control("subtitles", cfg.cdn.caching_rules)
    assert cache_control_for_key("metadata/abc.json", cfg.cdn.caching_rules) == UNKNOWN_TYPE_CACHE_CONTROL


def test_edge_cache_disabled_makes_it_private():
    raw = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    raw["caching_rules"]["hls_playlists"] = {"cache_duration": "2m", "browser_cache": "10s", "edge_cache": False}
    c = build_config(raw)
    assert cache_control("hls_playlists", c.cdn.caching_rules) == "private, max-age=10"
    assert edge_ttl("hls_playlists", c.cdn.caching_rules) == 0
    assert edge_ttl("hls_segments", c.cdn.caching_rules) == 86400


@pytest.mark.parametrize("key, content_type", [
    ("hls/a/master.m3u8", "application/vnd.apple.mpegurl"),
    ("hls/a/720p/s1.ts", "video/mp2t"),
    ("hls/a/720p/s1.m4s", "video/iso.segment"),
    ("hls/a/audio/s1.aac", "audio/aac"),
    ("videos/a.mp4", "video/mp4"),
    ("thumbnails/a/p.jpg", "image/jpeg"),
    ("thumbnails/a/p.png", "image/png"),
    ("thumbnails/a/p.webp", "image/webp"),
    ("thumbnails/a/s.vtt", "text/vtt; charset=utf-8"),
    ("hls/a/enc.key", "application/octet-stream"),
    ("x/unknown.bin", "application/octet-stream"),
])
def test_content_types(key, content_type):
    assert content_type_for_key(key) == content_type


def test_headers_for_key(cfg):
    assert headers_for_key("hls/a/720p/s1.ts", cfg.cdn.caching_rules) == {
        "Content-Type": "video/mp2t", "Cache-Control": cache_control("hls_segments", cfg.cdn.caching_rules)}


def test_cache_levels_and_warming(cfg):
    assert [lvl.name for lvl in cache_levels_for("metadata", cfg.caching)] == ["Origin Cache", "Application Cache"]
    assert cache_levels_for("nothing", cfg.caching) == ()
    popular = cfg.caching.popular_view_count
    assert should_warm("video_upload_complete", cfg.caching)
    assert should_warm("trending_content", cfg.caching)
    assert not should_warm("high_view_count", cfg.caching, view_count=popular)
    assert should_warm("high_view_count", cfg.caching, view_count=popular + 1)
    assert not should_warm("full_moon", cfg.caching, view_count=10**9)
    assert warm_segment_count(cfg.caching) == cfg.caching.warm_first_segments
