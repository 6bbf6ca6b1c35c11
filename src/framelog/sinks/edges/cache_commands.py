"""Purge and warm the local nginx edges and purge the origin shield (what ``cdn.commands`` asks for).

Purge
    ngx_cache_purge (Debian's 2.3) removes one cache key per request and has
    no wildcards, so a pattern such as the seed's ``/hls/<id>/*`` is expanded
    against the keys the edge actually holds: each cache file starts with a
    ``KEY: <key>`` line, and the edge's cache directory is in the state dir.
    Every matching key is then purged through the module, so nginx's own index
    stays right. A pattern no cached key matches (e.g. the seed's
    ``/videos/*/<id>*``, which the edges never serve) purges nothing.

Warm
    Fetch the given paths through the edge with signed URLs, plus what the
    master playlist leads to: every rendition playlist (and init segment) and
    the first ``caching_strategy.cache_warming.warm_first_segments`` segments
    of each. The edge caches what it fetched, so the next viewer gets a HIT;
    its misses go through the origin shield, which keeps them too.

The shield is purged like an edge (same module, same token, its own cache
directory), and before the edges: an edge refetching in between must not get
the shield's stale copy.
"""
from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from framelog.core import object_keys
from framelog.core.config import CachingStrategy, CdnConfig, SecurityConfig, StackConfig
from framelog.processors import cdn_routing
from framelog.processors.edge_signing import parse_object_path, purge_token, signed_edge_url
from framelog.sinks.edges.protocol import PURGE_HEADER, PURGE_PATH, SHIELD_NAME, cache_dir, shield_address, shield_dir

REQUEST_TIMEOUT = 10.0
KEY_HEADER_BYTES = 4096       # nginx's cache file header (and its "KEY: " line) sits in the first bytes
_KEY_LINE = re.compile(rb"\nKEY: ([^\n]*)\n")
_HEADER_VERSION = 5           # NGX_HTTP_CACHE_VERSION of the nginx versions Debian ships (1.18 to 1.26)
_HEADER_DATE_END = 48         # version, valid_sec, updating_sec, error_sec, last_modified, date: 8 bytes each
_URI_ATTR = re.compile(r'URI="([^"]+)"')
_URI_TAGS = ("#EXT-X-MAP", "#EXT-X-MEDIA", "#EXT-X-I-FRAME-STREAM-INF")   # not EXT-X-KEY: keys come from the API


@dataclass
class PurgeResult:
    provider: str
    purged: list[str] = field(default_factory=list)      # keys removed from the cache
    errors: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # keys not purged because the edge could not answer


@dataclass
class WarmResult:
    provider: str
    fetched: dict[str, str] = field(default_factory=dict)  # object path -> X-Cache-Status of the warming fetch
    errors: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # paths not fetched because the edge (or behind it) was down


def is_unavailable(exc: Exception) -> bool:
    """A failure that trying again later can fix: the edge did not answer, or answered 5xx (the shield or the
    origin behind it away). A 403 or 404 is an answer, and the same one next time."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


# ------------------------------------------------------------ pure helpers

def cached_entries(directory: Path) -> Iterator[tuple[str, Path]]:
    """(cache key, file) of every entry in an nginx proxy_cache directory (the key is in each file's header)."""
    if not directory.is_dir():
        return
    for path in directory.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            with open(path, "rb") as f:
                head = f.read(KEY_HEADER_BYTES)
        except OSError:       # evicted or purged meanwhile
            continue
        m = _KEY_LINE.search(head)
        if m:
            yield m.group(1).decode("utf-8", "replace"), path


def stored_at(path: Path) -> int | None:
    """When nginx stored the cache file ``path`` (epoch seconds): the ``date`` of its binary header
    (ngx_http_file_cache_header_t, version 5: six 64-bit fields, ``date`` the sixth); None if unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_DATE_END)
    except OSError:
        return None
    if len(head) < _HEADER_DATE_END or int.from_bytes(head[:8], "little") != _HEADER_VERSION:
        return None
    return int.from_bytes(head[_HEADER_DATE_END - 8:_HEADER_DATE_END], "little", signed=True)


def cached_keys(directory: Path) -> list[str]:
    return [key for key, _ in cached_entries(directory)]


def cache_file(directory: Path, key: str) -> Path:
    """Where nginx keeps ``key`` (``levels=1:2``: the md5's last hex digit, then the two before it)."""
    digest = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    return directory / digest[-1] / digest[-3:-1] / digest


def matching_keys(pattern: str, keys: Iterable[str]) -> list[str]:
    """Keys a purge pattern covers: exact, or ``*`` as any run of characters (the seed's CDN paths)."""
    if "*" not in pattern:
        return [k for k in keys if k == pattern]
    return sorted({k for k in keys if fnmatch.fnmatchcase(k, pattern.replace("[", "[[]"))})


def playlist_uris(text: str) -> list[str]:
    """URIs a playlist references: variant/segment lines and URI="…" of MAP/MEDIA/I-FRAME tags, in order."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith(_URI_TAGS):
                out += _URI_ATTR.findall(line)
            continue
        out.append(line)
    return out


def is_media_playlist(uri: str) -> bool:
    return posixpath.splitext(urlsplit(uri).path)[1].lower() == ".m3u8"


def resolve_in_scope(base_path: str, uri: str) -> str | None:
    """``uri`` resolved against the object path ``base_path``; None if it leaves the video's prefix."""
    if urlsplit(uri).scheme or uri.startswith("//"):
        return None
    resolved = posixpath.normpath(urlsplit(urljoin(base_path, uri)).path)
    try:
        target, base = parse_object_path(resolved), parse_object_path(base_path)
    except ValueError:
        return None
    return "/" + target.key if (target.kind, target.video_id) == (base.kind, base.video_id) else None


# ------------------------------------------------------------ the client

@dataclass(frozen=True)
class EdgeCacheSettings:
    """The sections an :class:`EdgeCache` reads: the providers and the shield (``config.cdn``), the host and
    the state dir (``config.stack``), the signed URLs' lifetime (``config.security``) and how many segments
    a warm fetches (``config.caching``)."""
    cdn: CdnConfig
    stack: StackConfig
    security: SecurityConfig
    caching: CachingStrategy


class EdgeCache:
    """Purge and warm one local edge (``provider_key``); :func:`shield_cache` purges the shield with it."""

    def __init__(self, settings: EdgeCacheSettings, provider_key: str, *, secret: bytes,
                 client: httpx.Client | None = None, base_url: str | None = None, directory: Path | None = None):
        self.settings = settings
        self.provider_key = provider_key
        self.base_url = base_url or cdn_routing.edge_base_url(provider_key, settings.cdn, settings.stack.host)
        self.cache_dir = directory or cache_dir(settings.stack.state_dir, provider_key)
        self.secret = secret
        self._purge_token = purge_token(secret)
        self.client = client or httpx.Client(timeout=REQUEST_TIMEOUT)

    def close(self) -> None:
        self.client.close()

    # --- purge
    def purge_key(self, key: str) -> bool:
        """Remove one cache key (an object path like ``/hls/<id>/master.m3u8``); True if it was cached."""
        parse_object_path(key)
        r = self.client.get(f"{self.base_url}{PURGE_PATH}{key}", headers={PURGE_HEADER: self._purge_token})
        if r.status_code == 404:
            return False
        r.raise_for_status()
        return True

    def purge(self, patterns: Iterable[str]) -> PurgeResult:
        """Purge every cached key matching any of ``patterns`` (exact paths or ``*`` wildcards).

        A stopped edge cannot be asked; its matching cache files are deleted
        instead, so it does not come back serving what was invalidated.
        """
        result = PurgeResult(self.provider_key)
        patterns = list(patterns)
        exact = [p for p in patterns if "*" not in p and is_served(p)]
        wildcards = [p for p in patterns if "*" in p]
        held = [key for key, _ in cached_entries(self.cache_dir)] if wildcards else []
        wanted = exact + [key for pattern in wildcards for key in matching_keys(pattern, held)]
        for key in dict.fromkeys(wanted):
            try:
                if self.purge_key(key):
                    result.purged.append(key)
            except httpx.ConnectError:
                path = cache_file(self.cache_dir, key)
                if path.exists():
                    path.unlink(missing_ok=True)
                    result.purged.append(key)
            except (httpx.HTTPError, ValueError) as exc:
                result.errors.append(f"{key}: {exc}")
                if is_unavailable(exc):
                    result.unavailable.append(key)
        return result

    # --- warm
    def _fetch(self, path: str, now: float) -> httpx.Response:
        s = self.settings
        url = signed_edge_url(self.provider_key, path, s.cdn, s.stack.host, s.security, secret=self.secret, now=now)
        r = self.client.get(url)
        r.raise_for_status()
        return r

    def warm(self, video_id: str, paths: Iterable[str] = (), *, now: float | None = None) -> WarmResult:
        """Fetch ``paths`` and the video's master, playlists and first segments through this edge."""
        now = time.time() if now is None else now
        result = WarmResult(self.provider_key)
        first_n = self.settings.caching.warm_first_segments
        queue = [object_keys.master_playlist(video_id)] + [p for p in paths if is_served(p)]
        seen: set[str] = set()
        while queue:
            path = "/" + queue.pop(0).lstrip("/")
            if path in seen:
                continue
            seen.add(path)
            try:
                r = self._fetch(path, now)
            except (httpx.HTTPError, ValueError) as exc:
                result.errors.append(f"{path}: {exc}")
                if is_unavailable(exc):
                    result.unavailable.append(path)
                continue
            result.fetched[path] = r.headers.get("X-Cache-Status", "")
            if not is_media_playlist(path):
                continue
            uris = [u for u in (resolve_in_scope(path, uri) for uri in playlist_uris(r.text)) if u]
            playlists = [u for u in uris if is_media_playlist(u)]
            media = [u for u in uris if not is_media_playlist(u)]
            queue += playlists + media[:first_n + (1 if _has_init(r.text) else 0)]
        return result


def _has_init(text: str) -> bool:
    return "#EXT-X-MAP" in text


def is_served(path: str) -> bool:
    """An object path an edge serves (``/hls/<id>/...``, ``/thumbnails/...``, the progressive MP4)."""
    try:
        parse_object_path(path)
        return True
    except ValueError:
        return False


def shield_cache(settings: EdgeCacheSettings, *, secret: bytes) -> EdgeCache:
    """The origin shield's cache, to purge (warming goes through an edge, whose misses fill the shield)."""
    return EdgeCache(settings, SHIELD_NAME, secret=secret,
                     base_url=f"http://{shield_address(settings.stack, settings.cdn)}",
                     directory=shield_dir(settings.stack.state_dir))


def edge_caches(settings: EdgeCacheSettings, *, secret: bytes, providers: Iterable[str] = ()) -> list[EdgeCache]:
    """One EdgeCache per wanted provider (``providers`` empty: every configured one)."""
    wanted = list(providers) or list(settings.cdn.providers)
    for key in wanted:
        cdn_routing.provider(key, settings.cdn)       # UnknownProviderError names the bad key
    return [EdgeCache(settings, key, secret=secret) for key in wanted]

