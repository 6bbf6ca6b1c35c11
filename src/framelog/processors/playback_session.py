"""Playback sessions: what the stream API vouches for, carried by the player with every event batch.

``GET /v1/stream`` issues one per playback (and ``POST /v1/stream/renew`` a
fresh one with each renewal); ``POST /v1/events`` believes a player's events
only as far as the session says: which video, which viewer, which country,
until when. A session is ``<payload>.<signature>`` like the other tokens of
``processors.tokens`` (HMAC-SHA256 under its own domain string, so no other
token verifies as a session), payload::

    {"v": 1, "typ": "session", "sid": session id, "vid": video id,
     "sub": viewer id, "cc": country or null, "basis": grant basis or null,
     "sx": share link expiry or null, "vs": stream API recorded the view_start,
     "exp": expiry}

``basis`` is the key grant's viewer claim (``processors.video_access.grant_viewer``:
``user``, ``+share id``, ``user+share id``, or null for a public video), so a
renewal re-checks access exactly as the key endpoint does. ``sx`` keeps every
renewed URL within the share link's own lifetime.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from framelog.core.ids import is_opaque_id, is_viewer_id
from framelog.processors.tokens import (
    ExpiredTokenError,
    MalformedTokenError,
    WrongVideoError,
    _b64,
    _expiry,
    _mac,
    _signed_payload,
    _unb64,
    _video_claim,
)

_SESSION_DOMAIN = b"framelog.playback-session.v1."
VIEWER_ID_MAX = 128   # a playback session's viewer id (core.ids.is_viewer_id)
_COUNTRY = re.compile(r"[A-Z]{2}")
_BASIS = re.compile(r"[A-Za-z0-9_.@:+-]{1,256}")


@dataclass(frozen=True)
class PlaybackSession:
    session_id: str
    video_id: str
    viewer_id: str
    country: str | None
    basis: str | None               # the key grant's viewer claim (who was let in, on what)
    share_expires_at: int | None    # the share link's expiry when let in by one
    view_recorded: bool             # the stream API's view_start reached the log
    expires_at: int


def _optional(value: object, valid: Callable[[str], object], what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not valid(value):
        raise MalformedTokenError(f"bad {what}")
    return value


def _epoch(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedTokenError(f"bad {what}")
    return value


def issue_session(session: PlaybackSession | None = None, *, secret: bytes, now: float, ttl: float,
                  session_id: str = "", video_id: str = "", viewer_id: str = "", country: str | None = None,
                  basis: str | None = None, share_expires_at: int | None = None,
                  view_recorded: bool = True) -> tuple[str, PlaybackSession]:
    """(token, claims) of a session living ``ttl`` seconds; ``session`` given: the same session, renewed."""
    if session is not None:
        session_id, video_id, viewer_id = session.session_id, session.video_id, session.viewer_id
        country, basis, share_expires_at = session.country, session.basis, session.share_expires_at
        view_recorded = session.view_recorded
    if not is_opaque_id(session_id):
        raise ValueError(f"invalid session id {session_id!r}")
    if not is_viewer_id(viewer_id, VIEWER_ID_MAX):
        raise ValueError(f"invalid viewer id {viewer_id!r}")
    if country is not None and not _COUNTRY.fullmatch(country):
        raise ValueError(f"invalid country {country!r}")
    if basis is not None and not _BASIS.fullmatch(basis):
        raise ValueError(f"invalid grant basis {basis!r}")
    claims = PlaybackSession(session_id, _video_claim(video_id), viewer_id, country, basis, share_expires_at,
                             bool(view_recorded), _expiry(now, ttl))
    payload = _b64(json.dumps({"v": 1, "typ": "session", "sid": claims.session_id, "vid": claims.video_id,
                               "sub": claims.viewer_id, "cc": claims.country, "basis": claims.basis,
                               "sx": claims.share_expires_at, "vs": claims.view_recorded, "exp": claims.expires_at},
                              separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_mac(secret, _SESSION_DOMAIN + payload.encode())}", claims


def verify_session(token: str, *, secret: bytes, now: float, video_id: str | None = None) -> PlaybackSession:
    """The session's claims, or a ``TokenError`` (malformed, bad_signature, expired, wrong_video).

    The signature is checked before any claim is read.
    """
    payload = _signed_payload(token, _SESSION_DOMAIN, secret)
    try:
        data = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        raise MalformedTokenError("payload is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != 1 or data.get("typ") != "session":
        raise MalformedTokenError("not a version 1 playback session")
    sid = _optional(data.get("sid"), is_opaque_id, "session id")
    viewer = _optional(data.get("sub"), lambda v: is_viewer_id(v, VIEWER_ID_MAX), "viewer id")
    if sid is None or viewer is None or not isinstance(data.get("vs"), bool):
        raise MalformedTokenError("incomplete session")
    sx = data.get("sx")
    claims = PlaybackSession(sid, _video_claim(data.get("vid")), viewer,
                             _optional(data.get("cc"), _COUNTRY.fullmatch, "country"),
                             _optional(data.get("basis"), _BASIS.fullmatch, "basis"),
                             None if sx is None else _epoch(sx, "share expiry"), data["vs"],
                             _epoch(data.get("exp"), "expiry"))
    if video_id is not None and claims.video_id != video_id:
        raise WrongVideoError(f"session is for another video than {video_id!r}")
    if now >= claims.expires_at:
        raise ExpiredTokenError(f"session expired at {claims.expires_at}")
    return claims
