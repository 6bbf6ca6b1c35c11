"""The resumable upload protocol (tus-like, over S3 multipart): headers, sessions, chunk rules.

Pure helpers, no I/O, shared by the API (``framelog.api.videos``) and the client
(``framelog.clients.upload``):

* ``POST /videos`` with ``Upload-Length`` (and optional tus ``Upload-Metadata``:
  ``key base64(value),key2 base64(value2)``; keys ``filename``, ``filetype`` or
  ``content_type``, ``owner``) creates an upload; 201, ``Location`` and
  ``Upload-Offset: 0``.
* ``HEAD <location>`` tells the offset the server holds (sum of the S3 parts).
* ``PATCH <location>`` with ``Upload-Offset`` and a body of
  ``application/offset+octet-stream`` appends one part; 204 and the new
  ``Upload-Offset``, or 200 and the upload's result once it is complete.

Every part but the last must be at least ``MIN_PART_SIZE`` bytes (the S3
multipart rule); the session itself lives in object storage, so any API
process continues any upload.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

TUS_RESUMABLE = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB           # S3: every part but the last
DEFAULT_CHUNK_SIZE = 8 * MIB      # what the client sends
MAX_CHUNK_SIZE = 256 * MIB        # one PATCH body at most (it is spooled to disk)
MAX_PARTS = 10_000                # S3: parts per multipart upload

SESSION_VERSION = 1

_DIGITS = re.compile(r"^[0-9]{1,20}$")
_META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,127}$")
_OWNER = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}$")


class ProtocolError(Exception):
    """A request broke the protocol; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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


# ------------------------------------------------------------------ chunks

@dataclass(frozen=True)
class ChunkPlan:
    """What one PATCH may carry at ``offset`` of an upload of ``length`` bytes."""
    offset: int
    length: int
    remaining: int
    max_bytes: int            # the body must not exceed this


def plan_chunk(offset: int, length: int, parts_so_far: int, declared: int | None,
               max_chunk: int = MAX_CHUNK_SIZE) -> ChunkPlan:
    """Check what can be known before reading a body (``declared``: its Content-Length, if any)."""
    if offset > length:
        raise ProtocolError(409, f"Upload-Offset {offset} is beyond Upload-Length {length}")
    remaining = length - offset
    max_bytes = min(remaining, max_chunk)
    if declared is not None:
        if declared > remaining:
            raise ProtocolError(413, f"a body of {declared} bytes at offset {offset} overruns Upload-Length {length}")
        if declared > max_chunk:
            raise ProtocolError(413, f"a body of {declared} bytes exceeds the maximum chunk of {max_chunk} bytes")
        check_chunk_size(declared, remaining)
    if remaining and parts_so_far >= MAX_PARTS:
        raise ProtocolError(400, f"an upload has at most {MAX_PARTS} parts")
    return ChunkPlan(offset, length, remaining, max_bytes)


def check_chunk_size(size: int, remaining: int) -> None:
    """Every chunk but the final one (which ends the upload) must be at least MIN_PART_SIZE."""
    if 0 < size < remaining and size < MIN_PART_SIZE:
        raise ProtocolError(400, f"a chunk of {size} bytes is too small: every chunk but the last must be at "
                                 f"least {MIN_PART_SIZE} bytes")


def offset_of_parts(parts: Sequence[Mapping[str, Any]]) -> int:
    """The upload offset the S3 parts add up to; the parts must be numbered 1..n without gaps."""
    numbers = sorted(int(p["PartNumber"]) for p in parts)
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"multipart parts are not contiguous: {numbers[:20]}")
    return sum(int(p["Size"]) for p in parts)


# ------------------------------------------------------------------ the session object

@dataclass(frozen=True)
class UploadSession:
    """What the API keeps in ``uploads/{video_id}/_session.json`` while an upload is open."""
    video_id: str
    object_key: str
    upload_id: str
    length: int
    filename: str
    content_type: str
    owner: str
    created: str              # ISO 8601 UTC
    event_id: str             # the UploadCompleted event's id, fixed up front: a re-emission is a duplicate
    version: int = SESSION_VERSION
    priority: str = ""        # processing_priorities level from the request or the workspace

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> UploadSession:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("version") != SESSION_VERSION:
            raise ValueError(f"not an upload session of version {SESSION_VERSION}")
        fields = {f: raw[f] for f in cls.__dataclass_fields__ if f in raw}
        session = cls(**fields)
        if not isinstance(session.length, int) or session.length < 1:
            raise ValueError(f"bad session length {session.length!r}")
        return session


def upload_path(video_id: str) -> str:
    """The URL path of an upload (the ``Location`` of ``POST /videos``)."""
    return f"/videos/{video_id}/upload"
