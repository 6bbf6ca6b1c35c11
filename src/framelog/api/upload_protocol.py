"""The tus 1.0.0 resumable upload protocol (core, creation, termination, checksum): headers and rules.

Pure helpers, no I/O, shared by the API (``framelog.api.videos``) and the upload
service (``framelog.sinks.upload_sessions``); the light client (client/,
``framelog_client.upload``) repeats the few constants it needs, since it ships
alone (tests/unit/test_client_package.py checks they agree). What the API
answers (https://tus.io/protocols/resumable-upload):

* ``OPTIONS /videos``: 204, ``Tus-Version``, ``Tus-Extension``, ``Tus-Max-Size``,
  ``Tus-Checksum-Algorithm``.
* ``POST /videos`` (creation) with ``Upload-Length`` and ``Upload-Metadata``
  (``key base64(value),...``; ``filename``, ``filetype``/``content_type``,
  ``visibility``, ``workspace``, ``priority``): 201 and ``Location``.
* ``HEAD <location>``: 200, ``Upload-Offset``, ``Upload-Length``, ``Cache-Control: no-store``.
* ``PATCH <location>`` with ``Upload-Offset`` and an ``application/offset+octet-stream``
  body of any size: 204 and the new ``Upload-Offset``; 409 when the offset is not the
  server's, 415 for another content type, 460 when ``Upload-Checksum`` does not match
  (the chunk is discarded).
* ``DELETE <location>`` (termination): 204.
* Every request but OPTIONS carries ``Tus-Resumable: 1.0.0``; another version is 412.

The server cuts a body into S3 multipart parts as it streams in, so a client
may send the whole file in one PATCH or chunks of any size.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from framelog.core.errors import ApiError

TUS_RESUMABLE = "1.0.0"
TUS_VERSIONS = (TUS_RESUMABLE,)
TUS_EXTENSIONS = ("creation", "termination", "checksum")
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "sha512", "md5")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
CHECKSUM_MISMATCH = 460           # tus checksum extension: the chunk was discarded

# What a browser page on another origin must be allowed to send and to read (CORS)
REQUEST_HEADERS = ("Authorization", "Content-Type", "Tus-Resumable", "Upload-Length", "Upload-Offset",
                   "Upload-Metadata", "Upload-Checksum", "Upload-Defer-Length", "Upload-Concat",
                   "X-HTTP-Method-Override", "X-Requested-With")
RESPONSE_HEADERS = ("Location", "Upload-Offset", "Upload-Length", "Upload-Metadata", "Tus-Resumable",
                    "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm", "Video-Id",
                    "Upload-Status", "Retry-After")
METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")

MIB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * MIB     # what framelog's own client sends per PATCH (any size works)

_DIGITS = re.compile(r"^[0-9]{1,20}$")
_META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,127}$")
_OWNER = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}$")


class ProtocolError(ApiError):
    """A request broke the protocol; ``status`` is the HTTP status to answer with (the API's ApiError)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(status, message, {"Tus-Resumable": TUS_RESUMABLE, **(headers or {})})


# ------------------------------------------------------------------ headers

def parse_non_negative(value: str | None, header: str) -> int:
    """A header holding a non-negative decimal integer (no sign, no spaces inside)."""
    if value is None:
        raise ProtocolError(400, f"missing {header} header")
    text = value.strip()
    if not _DIGITS.match(text):
        raise ProtocolError(400, f"{header} must be a non-negative integer, got {value!r}")
    return int(text)


def parse_upload_length(value: str | None, max_size: int) -> int:
    """``Upload-Length``: 1..max_size bytes; 413 when larger than the limit."""
    length = parse_non_negative(value, "Upload-Length")
    if length == 0:
        raise ProtocolError(400, "Upload-Length must be at least 1 byte (an empty file is not a video)")
    if length > max_size:
        raise ProtocolError(413, f"Upload-Length {length} exceeds the maximum upload size of {max_size} bytes")
    return length


def parse_upload_offset(value: str | None) -> int:
    return parse_non_negative(value, "Upload-Offset")


def parse_upload_metadata(value: str | None) -> dict[str, str]:
    """tus ``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value may be absent)."""
    out: dict[str, str] = {}
    if value is None or not value.strip():
        return out
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split()
        if len(parts) > 2:
            raise ProtocolError(400, f"Upload-Metadata pair {item!r}: expected 'key base64value'")
        key = parts[0]
        if not _META_KEY.match(key):
            raise ProtocolError(400, f"Upload-Metadata key {key!r} is not valid")
        if key in out:
            raise ProtocolError(400, f"Upload-Metadata key {key!r} given twice")
        if len(parts) == 1:
            out[key] = ""
            continue
        try:
            out[key] = base64.b64decode(parts[1], validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(400, f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text") from exc
    return out


def encode_upload_metadata(metadata: Mapping[str, str]) -> str:
    """The inverse of ``parse_upload_metadata``."""
    pairs = []
    for key, value in metadata.items():
        if not _META_KEY.match(key):
            raise ValueError(f"metadata key {key!r} is not valid")
        pairs.append(f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}" if value else key)
    return ",".join(pairs)


def check_offset_content_type(value: str | None) -> None:
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != OFFSET_CONTENT_TYPE:
        raise ProtocolError(415, f"PATCH bodies must be {OFFSET_CONTENT_TYPE}, got {value!r}")


# ------------------------------------------------------------------ upload attributes

def clean_filename(name: str | None) -> str:
    """The last path component, without control characters, at most 200 characters ('' if none)."""
    if not name:
        return ""
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    return base.strip()[:200]


def clean_content_type(value: str | None, filename: str = "") -> str:
    """A ``type/subtype`` content type: the given one if well-formed, else guessed from the filename."""
    if value:
        text = value.split(";", 1)[0].strip().lower()
        if not _CONTENT_TYPE.match(text):
            raise ProtocolError(400, f"content type {value!r} is not a valid type/subtype")
        return text
    import mimetypes

    return (mimetypes.guess_type(filename)[0] if filename else None) or "application/octet-stream"


def clean_owner(value: str | None, default: str = "local-user") -> str:
    if not value:
        return default
    if not _OWNER.match(value):
        raise ProtocolError(400, f"owner {value!r}: expected 1-128 characters of [A-Za-z0-9_.@:-]")
    return value


# ------------------------------------------------------------------ versions, checksums, parts

def check_tus_resumable(value: str | None) -> None:
    """Every request but OPTIONS names the protocol version it speaks; 412 for one not served."""
    if value is None or value.strip() not in TUS_VERSIONS:
        raise ProtocolError(412, f"Tus-Resumable {value!r} is not supported; this server speaks "
                                 f"{', '.join(TUS_VERSIONS)}")


@dataclass(frozen=True)
class Checksum:
    """``Upload-Checksum: <algorithm> <base64 digest>`` of one PATCH body."""
    algorithm: str
    digest: bytes

    def hasher(self) -> Any:
        return hashlib.new(self.algorithm)


def parse_upload_checksum(value: str | None) -> Checksum | None:
    if value is None:
        return None
    parts = value.strip().split()
    if len(parts) != 2:
        raise ProtocolError(400, f"Upload-Checksum must be '<algorithm> <base64 digest>', got {value[:80]!r}")
    algorithm = parts[0].lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise ProtocolError(400, f"checksum algorithm {parts[0][:20]!r} is not supported; "
                                 f"use one of {', '.join(CHECKSUM_ALGORITHMS)}")
    try:
        digest = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(400, "Upload-Checksum digest is not base64") from exc
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise ProtocolError(400, f"Upload-Checksum digest has {len(digest)} bytes, {algorithm} has "
                                 f"{hashlib.new(algorithm).digest_size}")
    return Checksum(algorithm, digest)


def upload_path(video_id: str) -> str:
    """The URL path of an upload (the ``Location`` of ``POST /videos``)."""
    return f"/videos/{video_id}/upload"
