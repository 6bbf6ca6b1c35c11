"""Signed tokens: share links and playback URLs (HMAC-SHA256, stdlib only).

Share token
    ``<payload>.<signature>``, both unpadded base64url. The payload is compact
    JSON ``{"exp", "jti", "typ": "share", "v": 1, "vid"}``; ``jti`` is the
    token id a revocation list refers to. Lifetime defaults to
    ``security.share_token_ttl``.

Who is asking (API tokens) is not here: standard JWTs, ``processors.identity``.

Playback URL parameters
    A query string ``video=..&prefix=..&exp=..[&viewer=..]&sig=..`` that
    authorises every path under ``prefix`` of one video until ``exp``,
    optionally bound to one viewer. Lifetime defaults to
    ``security.stream_url_ttl``.

Each kind signs under its own domain string, so a signature of one kind never
verifies as the other. Signatures are compared in constant time. ``verify_*``
raise a ``TokenError`` subclass whose ``reason`` is one of ``malformed``,
``bad_signature``, ``expired``, ``wrong_video``, ``revoked``, ``wrong_path``,
``wrong_viewer``. The signature is checked before any claim, so a forged token
only ever reports ``malformed`` or ``bad_signature`` and never reaches the
revocation callback.

A token is valid while ``now < exp`` (``exp`` is whole epoch seconds).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from framelog.core.config import SecurityConfig
from framelog.core.errors import ConfigError, FramelogError, InvalidIdError
from framelog.core.ids import is_opaque_id, is_viewer_id, validate_video_id

SECRET_FILE_NAME = "secret"
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 2048

_SHARE_DOMAIN = b"framelog.share.v1."
_PLAYBACK_DOMAIN = "framelog.playback.v1"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_EXP = re.compile(r"[0-9]{1,12}")
_PREFIX = re.compile(r"/[A-Za-z0-9_.\-/]{0,511}")
VIEWER_ID_MAX = 256   # a viewer id a stream URL may carry (core.ids.is_viewer_id)

Revoked = Callable[[str], bool] | Container[str] | None


# ------------------------------------------------------------ errors

class TokenError(FramelogError):
    """A token or signed URL that must be refused; ``reason`` says why."""
    reason = "invalid"


class MalformedTokenError(TokenError):
    reason = "malformed"


class BadSignatureError(TokenError):
    reason = "bad_signature"


class ExpiredTokenError(TokenError):
    reason = "expired"


class WrongVideoError(TokenError):
    reason = "wrong_video"


class RevokedTokenError(TokenError):
    reason = "revoked"


class WrongPathError(TokenError):
    reason = "wrong_path"


class WrongViewerError(TokenError):
    reason = "wrong_viewer"


# ------------------------------------------------------------ secret

def _check_secret(secret: bytes) -> bytes:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def secret_path(state_dir: Path) -> Path:
    return state_dir / SECRET_FILE_NAME


def load_or_create_secret(security: SecurityConfig, state_dir: Path) -> bytes:
    """``security.token_secret`` if set, else ``<state_dir>/secret``, created once (0600).

    Takes the security section and the stack's state dir (``config.security, config.stack.state_dir``),
    not the whole ``Config``: the secret needs nothing else.

    Creation is atomic (written aside, then hard-linked into place), so two
    processes starting together end up with the same secret.
    """
    configured = security.token_secret
    if configured:
        if len(configured.encode()) < MIN_SECRET_BYTES:
            raise ConfigError("security.token_secret", f"must be at least {MIN_SECRET_BYTES} bytes long")
        return configured.encode()
    path = secret_path(state_dir)
    if not path.exists():
        _create_secret_file(path)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)
    value = path.read_text().strip().encode()
    if len(value) < MIN_SECRET_BYTES:
        raise FramelogError(f"{path}: token secret file is shorter than {MIN_SECRET_BYTES} bytes; "
                            "delete it to generate a new one (this invalidates every issued token)")
    return value


def _create_secret_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its secret
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------ helpers

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise MalformedTokenError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedTokenError("not base64url") from None


def _mac(secret: bytes, message: bytes) -> str:
    return _b64(hmac.new(_check_secret(secret), message, hashlib.sha256).digest())


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def _expiry(now: float, ttl: float) -> int:
    if ttl <= 0:
        raise ValueError(f"token lifetime must be > 0 seconds, got {ttl}")
    return int(now + ttl)


def _is_revoked(revoked: Revoked, token_id: str) -> bool:
    if revoked is None:
        return False
    if callable(revoked):
        return bool(revoked(token_id))
    return token_id in revoked


def _video_claim(value: object) -> str:
    try:
        vid = validate_video_id(value)
    except InvalidIdError:
        raise MalformedTokenError("bad video id") from None
    if "\n" in vid:
        raise MalformedTokenError("bad video id")
    return vid


# ------------------------------------------------------------ share tokens

@dataclass(frozen=True)
class ShareToken:
    token: str
    token_id: str
    video_id: str
    expires_at: int


@dataclass(frozen=True)
class ShareClaims:
    token_id: str
    video_id: str
    expires_at: int


def new_token_id() -> str:
    return secrets.token_urlsafe(12)


def issue_share_token(video_id: str, security: SecurityConfig, *, secret: bytes, now: float,
                      ttl: float | None = None, token_id: str | None = None) -> ShareToken:
    """A share link token for ``video_id``, valid ``ttl`` seconds (default: share_token_ttl)."""
    vid = validate_video_id(video_id)
    jti = new_token_id() if token_id is None else token_id
    if not is_opaque_id(jti):
        raise ValueError(f"invalid token id {jti!r}: expected 1-64 characters of [A-Za-z0-9_-]")
    exp = _expiry(now, security.share_token_ttl if ttl is None else ttl)
    payload = _b64(json.dumps({"exp": exp, "jti": jti, "typ": "share", "v": 1, "vid": vid},
                              separators=(",", ":"), sort_keys=True).encode())
    token = f"{payload}.{_mac(secret, _SHARE_DOMAIN + payload.encode())}"
    return ShareToken(token, jti, vid, exp)


def _signed_payload(token: str, domain: bytes, secret: bytes) -> str:
    """The payload of ``<payload>.<signature>`` once its signature under ``domain`` checked out."""
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_CHARS \
            or token.count(".") != 1:
        raise MalformedTokenError("expected <payload>.<signature>")
    payload, signature = token.split(".")
    if not _B64URL.fullmatch(payload) or not _B64URL.fullmatch(signature):
        raise MalformedTokenError("expected <payload>.<signature>")
    if not _same(signature, _mac(secret, domain + payload.encode())):
        raise BadSignatureError("signature does not match")
    return payload


def _share_claims(payload: str) -> ShareClaims:
    try:
        data = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        raise MalformedTokenError("payload is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != 1 or data.get("typ") != "share":
        raise MalformedTokenError("not a version 1 share token")
    exp, jti = data.get("exp"), data.get("jti")
    if not isinstance(exp, int) or isinstance(exp, bool) or exp < 0:
        raise MalformedTokenError("bad expiry")
    if not is_opaque_id(jti):
        raise MalformedTokenError("bad token id")
    return ShareClaims(jti, _video_claim(data.get("vid")), exp)


def verify_share_token(token: str, *, secret: bytes, now: float, video_id: str | None = None,
                       revoked: Revoked = None) -> ShareClaims:
    """The token's claims, or a ``TokenError``.

    ``video_id``: the video being opened (``WrongVideoError`` if the token is for
    another). ``revoked``: a set of revoked token ids or a predicate over them.
    """
    claims = _share_claims(_signed_payload(token, _SHARE_DOMAIN, secret))
    if video_id is not None and claims.video_id != video_id:
        raise WrongVideoError(f"token is for another video than {video_id!r}")
    if now >= claims.expires_at:
        raise ExpiredTokenError(f"token expired at {claims.expires_at}")
    if _is_revoked(revoked, claims.token_id):
        raise RevokedTokenError(f"token {claims.token_id} was revoked")
    return claims


# ------------------------------------------------------------ signed playback URLs

@dataclass(frozen=True)
class PlaybackClaims:
    video_id: str
    path_prefix: str
    expires_at: int
    viewer_id: str | None


def _dot_segments(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or _dot_segments(prefix):
        raise ValueError(f"invalid path prefix {prefix!r}: expected an absolute path of [A-Za-z0-9_.-/]")
    return prefix


def _under(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it, at a '/' boundary ('/hls/ab' does not cover '/hls/abc/')."""
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] == "/"


def _playback_message(video_id: str, prefix: str, exp: int, viewer_id: str | None) -> bytes:
    return json.dumps([_PLAYBACK_DOMAIN, video_id, prefix, exp, viewer_id], separators=(",", ":")).encode()


def sign_playback(video_id: str, path_prefix: str, security: SecurityConfig, *, secret: bytes, now: float,
                  viewer_id: str | None = None, ttl: float | None = None) -> str:
    """Query string authorising ``path_prefix*`` of ``video_id`` (default ttl: stream_url_ttl)."""
    vid = validate_video_id(video_id)
    prefix = _check_prefix(path_prefix)
    if vid not in prefix.split("/"):
        raise ValueError(f"path prefix {prefix!r} must name the video {vid!r} as one of its segments")
    if viewer_id is not None and not is_viewer_id(viewer_id, VIEWER_ID_MAX):
        raise ValueError(f"invalid viewer id {viewer_id!r}")
    exp = _expiry(now, security.stream_url_ttl if ttl is None else ttl)
    params = {"video": vid, "prefix": prefix, "exp": str(exp)}
    if viewer_id is not None:
        params["viewer"] = viewer_id
    params["sig"] = _mac(secret, _playback_message(vid, prefix, exp, viewer_id))
    return urlencode(params, safe="/")


def _query_params(query: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(query, Mapping):
        params = dict(query)
    else:
        if not isinstance(query, str) or len(query) > MAX_TOKEN_CHARS:
            raise MalformedTokenError("bad query string")
        try:
            pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise MalformedTokenError("bad query string") from None
        params = dict(pairs)
        if len(params) != len(pairs):
            raise MalformedTokenError("repeated query parameter")
    if not all(isinstance(v, str) for v in params.values()):
        raise MalformedTokenError("bad query string")
    return params


def _playback_claims(params: Mapping[str, str]) -> tuple[PlaybackClaims, str]:
    missing = [k for k in ("video", "prefix", "exp", "sig") if k not in params]
    if missing:
        raise MalformedTokenError(f"missing {', '.join(missing)}")
    vid = _video_claim(params["video"])
    prefix, exp, sig, viewer = params["prefix"], params["exp"], params["sig"], params.get("viewer")
    if not _PREFIX.fullmatch(prefix) or _dot_segments(prefix):
        raise MalformedTokenError("bad prefix")
    if not _EXP.fullmatch(exp):
        raise MalformedTokenError("bad expiry")
    if viewer is not None and not is_viewer_id(viewer, VIEWER_ID_MAX):
        raise MalformedTokenError("bad viewer")
    if not _B64URL.fullmatch(sig):
        raise MalformedTokenError("bad signature encoding")
    return PlaybackClaims(vid, prefix, int(exp), viewer), sig


def verify_playback(query: str | Mapping[str, str], *, video_id: str, path: str, secret: bytes, now: float,
                    viewer_id: str | None = None) -> PlaybackClaims:
    """Check signed playback parameters against the request for ``path`` of ``video_id``.

    ``path``: the request path, percent-decoding not applied ('%' is refused).
    ``viewer_id``: the requesting viewer, if known; a URL bound to another
    viewer raises ``WrongViewerError``. Without it a viewer-bound URL works as
    a bearer URL (an edge does not know who is asking).
    """
    claims, sig = _playback_claims(_query_params(query))
    expected = _mac(secret, _playback_message(claims.video_id, claims.path_prefix, claims.expires_at,
                                              claims.viewer_id))
    if not _same(sig, expected):
        raise BadSignatureError("signature does not match")
    if claims.video_id != video_id:
        raise WrongVideoError(f"URL is signed for another video than {video_id!r}")
    if now >= claims.expires_at:
        raise ExpiredTokenError(f"URL expired at {claims.expires_at}")
    if not isinstance(path, str) or not _PREFIX.fullmatch(path) or _dot_segments(path) \
            or not _under(path, claims.path_prefix):
        raise WrongPathError(f"{path!r} is not under the signed prefix {claims.path_prefix!r}")
    if viewer_id is not None and claims.viewer_id is not None and viewer_id != claims.viewer_id:
        raise WrongViewerError("URL is signed for another viewer")
    return claims
