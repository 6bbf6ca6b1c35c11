"""Signed edge URLs, checked by the edges themselves (nginx ``secure_link``).

The signature lives in the URL's *path*, not its query string, because hls.js
resolves rendition and segment URLs relative to the playlist URL and drops the
query string::

    http://<host>:<edge_port>/s/<sig>/<expires>/hls/<video_id>/master.m3u8
                                               └─ object key ────────────────┘

One signature authorises every object under the video's prefix of one kind
(``/hls/<video_id>/`` or ``/thumbnails/<video_id>/``: the *scope*), so
``/s/<sig>/<expires>/hls/<video_id>/720p/seg_001.ts`` verifies with the
master's signature while another video's path does not. The progressive MP4
sits at the seed's CDN path (``generateCDNPath``:
``videos/<yyyy>/<mm>/<quality>/<video_id>.mp4``) and its signature covers that
one file: its scope is the whole path.

``<sig>`` is what nginx's ``secure_link_md5 "$expires$scope <edge secret>"``
computes: base64url (no padding) of MD5 over ``f"{expires}{scope} {edge
secret}"``. MD5 is the only digest secure_link offers; the edge secret is a
key derived from the token secret (HMAC-SHA256 under its own domain string),
so the secret that signs share tokens and key grants never sits in nginx's
configuration. The edge accepts a URL while ``now <= expires``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from framelog.core.config import CdnConfig, SecurityConfig
from framelog.core.ids import validate_video_id
from framelog.processors.public_urls import public_edge_url
from framelog.processors.tokens import _check_secret

EDGE_SECRET_DOMAIN = b"framelog.edge.v1"
EDGE_PURGE_DOMAIN = b"framelog.edge.purge.v1"
EDGE_ORIGIN_DOMAIN = b"framelog.edge.origin.v1"
SIGNED_PREFIX = "s"                       # /s/<sig>/<expires>/<object key>
VIDEO_FILES = "videos"                    # the progressive MP4s (seed generateCDNPath)
EDGE_KINDS = ("hls", "thumbnails", VIDEO_FILES)   # the object prefixes an edge serves
PREFIX_KINDS = ("hls", "thumbnails")      # kinds laid out <kind>/<video_id>/<file...>, signed per prefix
_NAME = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"   # a file or folder name, never '.' or '..' (no leading dot)
_OBJECT = re.compile(rf"^(hls|thumbnails)/([A-Za-z0-9_-]{{1,64}})/({_NAME}(?:/{_NAME})*)$")
# videos/<yyyy>/<mm>/<quality>/<video_id>.mp4 (stack/nginx.py matches the same shape)
VIDEO_FILE_PATTERN = r"videos/[0-9]{4}/[0-9]{2}/[A-Za-z0-9_-]{1,32}/[A-Za-z0-9_-]{1,64}\.mp4"
_VIDEO_FILE = re.compile(r"^videos/([0-9]{4}/[0-9]{2}/[A-Za-z0-9_-]{1,32})/([A-Za-z0-9_-]{1,64})\.mp4$")


@dataclass(frozen=True)
class EdgeObject:
    """An object key an edge may serve: ``<kind>/<video_id>/<rest>``, or an MP4 ``videos/<rest>``."""
    kind: str
    video_id: str
    rest: str

    @property
    def key(self) -> str:
        if self.kind == VIDEO_FILES:
            return f"{VIDEO_FILES}/{self.rest}"
        return f"{self.kind}/{self.video_id}/{self.rest}"

    @property
    def scope(self) -> str:
        """What one signature covers: the video's prefix of its kind, or the one MP4 file."""
        if self.kind == VIDEO_FILES:
            return f"/{self.key}"
        return scope_for(self.kind, self.video_id)


def scope_for(kind: str, video_id: str) -> str:
    """The path prefix one signature covers: ``/<kind>/<video_id>/``."""
    if kind not in PREFIX_KINDS:
        raise ValueError(f"signatures cover the prefixes of {PREFIX_KINDS} only, not {kind!r}")
    return f"/{kind}/{validate_video_id(video_id)}/"


def parse_object_path(object_path: str) -> EdgeObject:
    """``hls/<id>/…``, ``thumbnails/<id>/…`` or ``videos/<y>/<m>/<quality>/<id>.mp4`` (one leading '/'
    allowed); ValueError otherwise."""
    path = object_path[1:] if isinstance(object_path, str) and object_path.startswith("/") else object_path
    v = _VIDEO_FILE.fullmatch(path) if isinstance(path, str) else None
    if v is not None:
        vid = validate_video_id(v.group(2))
        return EdgeObject(VIDEO_FILES, vid, f"{v.group(1)}/{vid}.mp4")
    m = _OBJECT.fullmatch(path) if isinstance(path, str) else None
    if m is None or any(part in (".", "..") for part in path.split("/")):
        raise ValueError(f"not an edge object path: {object_path!r}; expected hls/<video_id>/<file>, "
                         f"thumbnails/<video_id>/<file> or videos/<yyyy>/<mm>/<quality>/<video_id>.mp4")
    return EdgeObject(m.group(1), validate_video_id(m.group(2)), m.group(3))


def edge_secret(secret: bytes) -> str:
    """The key the edges check signatures with (hex), derived from the token secret."""
    return hmac.new(_check_secret(secret), EDGE_SECRET_DOMAIN, hashlib.sha256).hexdigest()


def edge_signature(scope: str, expires: int, secret: bytes) -> str:
    """nginx ``secure_link_md5 "$expires$scope <edge secret>"``, base64url without padding."""
    digest = hashlib.md5(f"{int(expires)}{scope} {edge_secret(secret)}".encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signed_edge_path(object_path: str, security: SecurityConfig, *, secret: bytes, now: float,
                     ttl: float | None = None) -> str:
    """``/s/<sig>/<expires>/<object key>`` (the path part of :func:`signed_edge_url`)."""
    obj = parse_object_path(object_path)
    lifetime = security.stream_url_ttl if ttl is None else ttl
    if lifetime <= 0:
        raise ValueError(f"URL lifetime must be > 0 seconds, got {lifetime}")
    expires = int(now + lifetime)
    return f"/{SIGNED_PREFIX}/{edge_signature(obj.scope, expires, secret)}/{expires}/{obj.key}"


def signed_edge_url(provider_key: str, object_path: str, cdn: CdnConfig, host: str, security: SecurityConfig, *,
                    secret: bytes, now: float, ttl: float | None = None) -> str:
    """A URL of ``object_path`` on the edge of ``provider_key`` that the edge accepts until ``now + ttl``.

    ``cdn``, ``host``: ``config.cdn``, ``config.stack.host`` (the edge's public base); ``ttl`` defaults
    to ``security.stream_url_ttl``; ``secret`` is
    ``processors.tokens.load_or_create_secret(config.security, config.stack.state_dir)``. Relative URLs in the
    object's playlists resolve under the same signature (same video, same kind).
    """
    path = signed_edge_path(object_path, security, secret=secret, now=now, ttl=ttl)
    return public_edge_url(provider_key, cdn, host) + path


def purge_token(secret: bytes) -> str:
    """The token an edge wants in ``X-Framelog-Purge`` before it purges (hex; derived, own domain)."""
    return hmac.new(_check_secret(secret), EDGE_PURGE_DOMAIN, hashlib.sha256).hexdigest()


def origin_token(secret: bytes) -> str:
    """What the edges send the origin as ``Referer``; the bucket policy lets anonymous reads through only
    with it (the CloudFront custom-origin pattern), so the origin serves the edges, not the world."""
    return hmac.new(_check_secret(secret), EDGE_ORIGIN_DOMAIN, hashlib.sha256).hexdigest()
