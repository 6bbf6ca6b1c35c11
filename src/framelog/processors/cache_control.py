"""Cache headers per stored file (seed §3.1 ``caching_rules``, ``getCacheControl``)
and the cache-warming decision (seed §5.1).

``file_type_for_key`` maps an object key to a ``config.cdn.caching_rules``
entry; ``cache_control`` turns that entry into a Cache-Control header:
``public, max-age=<browser_cache>, s-maxage=<cache_duration>``. AES-128 key
files are never cached anywhere (``private, no-store``): the key endpoint
decides per viewer. Keys of unknown type get ``no-cache`` (always revalidate)
rather than the seed's guessed one hour.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

from framelog.core.config import CacheLevel, CacheRule, CachingStrategy

HLS_PLAYLISTS = "hls_playlists"
HLS_SEGMENTS = "hls_segments"
THUMBNAILS = "thumbnails"
VIDEO_FILES = "video_files"
HLS_KEYS = "hls_keys"  # never cached; not a caching_rules entry on purpose

NO_STORE = "private, no-store"
UNKNOWN_TYPE_CACHE_CONTROL = "no-cache"
DEFAULT_CONTENT_TYPE = "application/octet-stream"

CONTENT_TYPES: dict[str, str] = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".aac": "audio/aac",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".vtt": "text/vtt; charset=utf-8",
    ".key": "application/octet-stream",
}

_BY_SUFFIX = {
    ".m3u8": HLS_PLAYLISTS,
    ".ts": HLS_SEGMENTS, ".m4s": HLS_SEGMENTS, ".aac": HLS_SEGMENTS,
    ".mp4": VIDEO_FILES,
    ".key": HLS_KEYS,
}
_THUMBNAIL_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".vtt"})
_THUMBNAIL_DIR = "thumbnails"
_HLS_DIR = "hls"
_WEBVTT = ".vtt"


def _suffix(key: str) -> str:
    return PurePosixPath(key).suffix.lower()


def file_type_for_key(key: str) -> str | None:
    """``hls_playlists`` / ``hls_segments`` / ``thumbnails`` / ``video_files`` /
    ``hls_keys``, or ``None`` for a key of no known type.

    Images and WebVTT count as thumbnails only under a ``thumbnails/`` folder
    (storyboard sprites and their .vtt index live there); WebVTT under ``hls/``
    is a subtitles segment.
    """
    suffix = _suffix(key)
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    if suffix in _THUMBNAIL_SUFFIXES and _THUMBNAIL_DIR in PurePosixPath(key).parts[:-1]:
        return THUMBNAILS
    if suffix == _WEBVTT and PurePosixPath(key).parts[0] == _HLS_DIR:
        return HLS_SEGMENTS          # a subtitles rendition's WebVTT segment (or its whole-file copy)
    return None


def content_type_for_key(key: str) -> str:
    return CONTENT_TYPES.get(_suffix(key), DEFAULT_CONTENT_TYPE)


def cache_control(file_type: str, rules: Mapping[str, CacheRule]) -> str:
    """The Cache-Control header for one ``caching_rules`` entry (or ``hls_keys``).

    ``edge_cache: false`` makes the response ``private`` (browser only).
    """
    if file_type == HLS_KEYS:
        return NO_STORE
    rule = rules.get(file_type)
    if rule is None:
        raise KeyError(f"no caching rule for file type {file_type!r}; known: {sorted(rules)}")
    browser = int(rule.browser_cache)
    if not rule.edge_cache:
        return f"private, max-age={browser}"
    return f"public, max-age={browser}, s-maxage={int(rule.cache_duration)}"


def edge_ttl(file_type: str, rules: Mapping[str, CacheRule]) -> int:
    """Seconds an edge keeps the object (0: do not cache at the edge)."""
    if file_type == HLS_KEYS:
        return 0
    rule = rules[file_type]
    return int(rule.cache_duration) if rule.edge_cache else 0


def cache_control_for_key(key: str, rules: Mapping[str, CacheRule]) -> str:
    """``rules``: the cdn section's ``caching_rules`` (``config.cdn.caching_rules``)."""
    file_type = file_type_for_key(key)
    return UNKNOWN_TYPE_CACHE_CONTROL if file_type is None else cache_control(file_type, rules)


def headers_for_key(key: str, rules: Mapping[str, CacheRule]) -> dict[str, str]:
    """Content-Type and Cache-Control to store with an object (S3 metadata) or serve."""
    return {"Content-Type": content_type_for_key(key), "Cache-Control": cache_control_for_key(key, rules)}


# ------------------------------------------------------------ seed §5.1 caching strategy

def cache_levels_for(content_type: str, caching: CachingStrategy) -> tuple[CacheLevel, ...]:
    """The caching-strategy levels holding ``content_type`` (e.g. "metadata"), edge first."""
    return tuple(level for level in caching.levels if content_type in level.content_types)


def should_warm(trigger: str, caching: CachingStrategy, view_count: int = 0) -> bool:
    """Whether a warming trigger applies; ``high_view_count`` needs more than
    ``popular_view_count`` views (seed: ``view_count > 1000``)."""
    if trigger not in caching.warming_triggers:
        return False
    if trigger == "high_view_count":
        return view_count > caching.popular_view_count
    return True


def warm_segment_count(caching: CachingStrategy) -> int:
    """How many leading segments of each rendition to preload to the edges."""
    return caching.warm_first_segments
