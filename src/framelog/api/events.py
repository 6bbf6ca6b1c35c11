"""``POST /v1/events``: batches of client playback events onto the log.

Request
    A JSON body, either ``{"events": [...]}`` or a bare array of event objects.
    ``Content-Type`` may be ``application/json``, ``text/plain`` (what
    ``navigator.sendBeacon`` sends for a string), ``application/octet-stream``
    or absent; ``Content-Encoding: gzip`` is accepted, and a gzip body without
    the header (a beacon cannot set headers) is recognised by its magic bytes.
    Limits (``playback_trust`` in framelog.yaml): 1 MiB on the wire, 10 MiB
    decompressed (decompressed incrementally with a cap, so a gzip bomb costs
    at most the cap), 8 gzip members, 500 events per batch; beyond any of
    them: 413. The body is decompressed, parsed and validated on a worker
    thread, never on the event loop.

Trust (``api.event_trust``)
    A batch carries the playback session ``GET /v1/stream`` issued
    (``X-Playback-Session`` header, or ``{"session": ..., "events": [...]}``
    for ``sendBeacon``), and is then believed only as far as the session says:

    * every event's ``video_id``, ``session_id`` and ``viewer_id`` are the
      session's (taken from it when absent); an event naming another video is
      refused with 403 ``session_wrong_video``, another session or viewer with
      400 ``session_mismatch`` (both with the event's index);
    * ``country`` is the session's (what the stream API saw from a trusted
      proxy), else ``X-Viewer-Country`` from a trusted proxy, else null;
    * ``view_start`` / ``video_view`` are refused (400 ``view_already_recorded``)
      when the stream API recorded the session's start itself (the usual case);
      otherwise one is accepted per session.
    * ``like`` (or the seed's ``video_like``): one per session; another is
      refused with 400 ``like_already_recorded`` (shares are not limited).

    No session: 401 ``session_required``; a forged, malformed or expired one:
    401 ``session_invalid`` / ``session_expired``. A request with the
    ``events:write`` scope (a server-side producer) needs no session and is
    bound to nothing. Refusals are answered, not dead-lettered: nothing of a
    refused batch is written, and the reason (with the event's index) goes
    back to the sender and to ``framelog_event_batches_refused_total``.
    Rate limits: 429 with ``Retry-After`` per client address (requests) and
    per session (events).

Events
    Every event has ``type``. ``quality_switch`` (the seed's
    ``trackQualitySwitch``) becomes a ``QualitySwitch`` record on
    ``playback.quality-switches``; any other type must be a symbol of the
    ``PlaybackEvent`` type enum (view_start, video_view, progress, pause, seek,
    rebuffer_start, rebuffer_end, error, ended, share, like; the seed's
    ``video_share`` / ``video_like`` are accepted as aliases) and becomes a
    ``PlaybackEvent`` on ``playback.events``. Kafka key: ``video_id``.

    The fields read from an event are exactly the fields of its Avro schema
    (read at run time, so a field the schema gains later is passed through
    without a code change), minus the ones the server owns; other keys are
    ignored. Values are checked against the schema's types (numbers finite,
    integers rounded, enums within their symbols) and then against the
    semantic rules of ``framelog.schemas.events`` (ids, non-negative
    positions, ...); numeric fields whose names end in ``_ms``, ``_seconds``
    or ``_bytes`` must not be negative.

    * ``event_id``: UUID text form, normalised to lower case. A client retry
      must resend the same id so the sink counts the event once. Without one
      the server derives a UUIDv5 from the event's canonical JSON, so a resent
      identical beacon still gets the same id.
    * ``client_time`` (alias: the seed's ``timestamp``): epoch milliseconds or
      ISO 8601 with a UTC offset; required.
    * Owned by the server, never read from the body: ``schema_version``,
      ``ingest_time`` (now), ``country`` (see Trust) and ``event_time``.
    * ``event_time`` = ``client_time``, which is what analytics bucket on and
      what stays identical across client retries (the raw tables are keyed
      by (video_id, event_time, event_id)). A client clock more than 5
      minutes in the future gets ``event_time`` clamped to ``ingest_time``
      (``client_time`` keeps what the client said); a clamped event resent
      later gets a later event_time, which is the price of not trusting a
      future clock. Past client times are kept (offline/queued beacons).

Answers
    * 202 ``{"accepted": n}`` once the broker acknowledged every record of the
      request (acks=all, idempotent producer).
    * 400 ``{"error": {"code", "message", "event_index", "field"}}`` naming the
      first bad field of the first bad event (``code`` is the reason); the whole batch is validated before
      anything is produced, so a 4xx means nothing of the batch was written.
    * 401 / 403 the session (see Trust), 429 rate limited (``Retry-After``),
      413 too large / too many events / gzip members, 415 unsupported type or
      encoding.
    * 503 (``Retry-After``) when the broker did not acknowledge in time. Some
      records of the batch may have been written (or still be written later);
      the client resends the batch with the same event ids and the sink drops
      the repeats.

Records go out through the app's one producer bridge (``Services.sender``,
``streams.emitter.AsyncEmitter``): a request awaits futures resolved by the delivery
reports, so no worker thread is held while the broker acknowledges. Every
refusal is an ``ApiError`` in the API's one body shape (``api.errors``):
``{"error": {"code": <reason>, "message", "event_index"?, "field"?}}``.
"""
from __future__ import annotations

import collections
import copy
import json
import logging
import math
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from framelog.api.errors import responses
from framelog.api.event_trust import (
    COUNTRY_HEADER,
    SESSION_FIELD,
    SESSION_HEADER,
    producer_authorized,
    retry_after,
    viewer_country,
)
from framelog.api.services import Svc
from framelog.core.config import PlaybackTrustConfig
from framelog.core.errors import ApiError
from framelog.core.ids import is_event_id
from framelog.processors.playback_session import PlaybackSession, verify_session
from framelog.processors.tokens import ExpiredTokenError, TokenError
from framelog.schemas import current_version, raw_schema
from framelog.schemas.events import UNKNOWN_SYMBOL, check_record, record_rules
from framelog.streams.exceptions import DeliveryError, EncodeError, ValidationError
from framelog.streams.producer import EventProducer, Key
from framelog.streams.topics import PLAYBACK_EVENTS, QUALITY_SWITCHES

log = logging.getLogger(__name__)

__all__ = ["router", "IngestSettings", "RequestError", "EventError", "ParsedEvent", "encode_events",
           "decode_body", "gunzip_capped", "parse_batch", "parse_body", "bind_to_session", "parse_event",
           "parse_events", "parse_client_time",
           "country_from_header", "derived_event_id", "COUNTRY_HEADER", "QUALITY_SWITCH"]

QUALITY_SWITCH = "quality_switch"
PLAYBACK_RECORD = "PlaybackEvent"
QUALITY_RECORD = "QualitySwitch"
TYPE_ALIASES = {"video_share": "share", "video_like": "like"}    # the seed's update_video_metrics names
CLIENT_TIME_ALIASES = ("client_time", "timestamp")                 # the seed's trackQualitySwitch sends timestamp
SERVER_FIELDS = frozenset({"schema_version", "event_time", "ingest_time", "country"})
ID_FIELDS = frozenset({"session_id", "viewer_id"})
SESSION_BOUND = ("video_id", "session_id", "viewer_id")            # taken from the playback session
VIEW_TYPES = frozenset({"view_start", "video_view"})              # what the rollups count as a view
ONCE_PER_SESSION = frozenset({"like"})                            # a player session likes its video once
MAX_ID_LEN = 128
MAX_STRING_LEN = 256
MIN_CLIENT_TIME_MS = 946_684_800_000        # 2000-01-01: anything earlier is almost surely seconds, not ms
MAX_CLIENT_TIME_MS = 32_503_680_000_000     # 3000-01-01
NON_NEGATIVE_SUFFIXES = ("_ms", "_seconds", "_bytes")
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a4e-5b8d-4e0a-9c1d-7a3b2f6e8d90")   # framelog's UUIDv5 namespace
ALLOWED_CONTENT_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
MiB = 1024 * 1024
_INT32 = (-(2 ** 31), 2 ** 31 - 1)
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


@dataclass(frozen=True)
class IngestSettings:
    """Limits of the endpoint (from ``playback_trust``); an app may be given others (``assemble(ingest=...)``)."""
    max_body_bytes: int = 1 * MiB              # on the wire (compressed or not)
    max_decoded_bytes: int = 10 * MiB          # after gzip
    max_events: int = 500
    max_gzip_members: int = 8
    max_future_skew_ms: int = 5 * 60_000       # client_time further ahead: event_time = ingest_time
    delivery_timeout: float = 15.0             # seconds to wait for the broker's acknowledgements
    producer_overrides: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_trust(cls, t: PlaybackTrustConfig) -> IngestSettings:
        """The limits of ``config.playback_trust``."""
        return cls(max_body_bytes=t.max_body_bytes, max_decoded_bytes=t.max_decoded_bytes, max_events=t.max_events,
                   max_gzip_members=t.max_gzip_members)


# ---------------------------------------------------------------- errors

class RequestError(ApiError):
    """A batch refused before anything was produced: the API's ApiError, its ``code`` the reason,
    with the event's index and the field when one event is at fault."""

    def __init__(self, status: int, reason: str, message: str, *, field: str | None = None,
                 event_index: int | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(status, message, headers, code=reason)
        self.field = field
        self.event_index = event_index

    @property
    def reason(self) -> str:
        return self.code

    def body(self) -> dict[str, Any]:
        where = {k: v for k, v in (("event_index", self.event_index), ("field", self.field)) if v is not None}
        return {"error": {"code": self.code, "message": self.message, **where}}


class EventError(RequestError):
    """One event is invalid: 400 (or ``status``) naming the event (index in the batch) and the field."""

    def __init__(self, reason: str, message: str, field: str | None = None, event_index: int | None = None,
                 status: int = 400):
        super().__init__(status, reason, message, field=field, event_index=event_index)

    def at(self, index: int) -> EventError:
        self.event_index = index
        self.message = f"event {index}: {self.message}"
        return self


# ---------------------------------------------------------------- body

def gunzip_capped(data: bytes, cap: int, max_members: int = IngestSettings.max_gzip_members) -> bytes:
    """Decompress gzip without ever holding more than ``cap`` + 1 bytes of output.

    Several members are allowed (concatenated gzip streams), at most
    ``max_members``: each member costs a fresh decompressor and a copy of the
    rest of the body, so a body of thousands of tiny members is refused at
    the first member over the limit instead of burning seconds of CPU.
    """
    out = bytearray()
    rest = data
    members = 0
    while True:
        members += 1
        if members > max_members:
            raise RequestError(413, "too_many_gzip_members", f"the gzip body has more than {max_members} members")
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while not d.eof:
                chunk = d.decompress(rest, cap + 1 - len(out))
                out += chunk
                if len(out) > cap:
                    raise RequestError(413, "body_too_large", f"decompressed body exceeds {cap} bytes")
                rest = d.unconsumed_tail
                if not chunk and not rest:
                    raise RequestError(400, "invalid_gzip", "gzip body is truncated")
        except zlib.error as exc:
            raise RequestError(400, "invalid_gzip", f"gzip body is not valid: {exc}") from None
        rest = d.unused_data
        if not rest.strip(b"\x00"):          # some writers pad the last member with zeros
            return bytes(out)


def decode_body(raw: bytes, content_encoding: str | None, max_decoded_bytes: int,
                max_gzip_members: int = IngestSettings.max_gzip_members) -> bytes:
    """The JSON bytes of a request body: gunzipped when declared gzip or starting with the gzip magic."""
    enc = (content_encoding or "").strip().lower()
    if enc in ("gzip", "x-gzip") or (enc in ("", "identity") and raw[:2] == b"\x1f\x8b"):
        return gunzip_capped(raw, max_decoded_bytes, max_gzip_members)
    if enc not in ("", "identity"):
        raise RequestError(415, "unsupported_encoding", f"Content-Encoding {content_encoding!r} is not supported "
                           "(use gzip or none)")
    if len(raw) > max_decoded_bytes:
        raise RequestError(413, "body_too_large", f"body exceeds {max_decoded_bytes} bytes")
    return raw


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ALLOWED_CONTENT_TYPES or media.endswith("+json"):
        return
    raise RequestError(415, "unsupported_media_type", f"Content-Type {media!r} is not supported "
                       "(send JSON as application/json or text/plain)")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_batch(data: bytes, max_events: int) -> list[Any]:
    """The list of events of a JSON body: ``{"events": [...]}`` or a bare array."""
    return parse_body(data, max_events)[0]


def parse_body(data: bytes, max_events: int) -> tuple[list[Any], str | None]:
    """(events, the body's playback session or None) of ``{"session"?, "events": [...]}`` or a bare array."""
    session = None
    try:
        doc = json.loads(data, parse_constant=_no_constants)
    except RecursionError:
        raise RequestError(400, "invalid_json", "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if isinstance(doc, dict):
        if "events" not in doc:
            raise RequestError(400, "missing_field", 'expected {"events": [...]} or a JSON array', field="events")
        session = doc.get(SESSION_FIELD)
        if session is not None and not isinstance(session, str):
            raise RequestError(400, "invalid_field", "session: expected a string", field=SESSION_FIELD)
        doc = doc["events"]
    if not isinstance(doc, list):
        raise RequestError(400, "invalid_field", f"events must be a JSON array, got {type(doc).__name__}",
                           field="events")
    if not doc:
        raise RequestError(400, "empty_batch", "the batch holds no events", field="events")
    if len(doc) > max_events:
        raise RequestError(413, "too_many_events", f"{len(doc)} events in one batch; at most {max_events}",
                           field="events")
    return doc, session


country_from_header = viewer_country      # the trusted edge header's value (read from trusted proxies only)


# ---------------------------------------------------------------- fields

@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str                 # string, double, float, int, long, boolean, enum, timestamp, other
    nullable: bool
    has_default: bool
    default: Any
    symbols: frozenset[str] = frozenset()


def _field_spec(f: Mapping[str, Any]) -> FieldSpec:
    t = f["type"]
    nullable = False
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        nullable = len(branches) < len(t)
        t = branches[0] if len(branches) == 1 else {"type": "other"}
    symbols: frozenset[str] = frozenset()
    if isinstance(t, dict):
        if t.get("logicalType") == "timestamp-millis":
            kind = "timestamp"
        elif t.get("type") == "enum":
            kind, symbols = "enum", frozenset(t["symbols"])
        elif t.get("type") in ("string", "double", "float", "int", "long", "boolean") and "logicalType" not in t:
            kind = t["type"]
        else:
            kind = "other"
    elif t in ("string", "double", "float", "int", "long", "boolean"):
        kind = t
    else:
        kind = "other"
    return FieldSpec(f["name"], kind, nullable, "default" in f, f.get("default"), symbols)


@cache
def record_fields(name: str) -> tuple[FieldSpec, ...]:
    """The field specs of record ``name``, read from its packaged schema."""
    return tuple(_field_spec(f) for f in raw_schema(name)["fields"])


@cache
def playback_types() -> frozenset[str]:
    """PlaybackEvent types a client may send (the schema's enum minus the reader fallback)."""
    for f in record_fields(PLAYBACK_RECORD):
        if f.name == "type":
            return f.symbols - {UNKNOWN_SYMBOL}
    raise RuntimeError("PlaybackEvent schema has no type field")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _coerce(spec: FieldSpec, v: Any) -> Any:
    """``v`` as the Avro type of ``spec``; raises EventError naming the field."""
    kind, name = spec.kind, spec.name
    if kind == "string":
        if not isinstance(v, str):
            raise EventError("invalid_field", f"{name}: expected a string, got {_show(v)}", name)
        limit = MAX_ID_LEN if name in ID_FIELDS else MAX_STRING_LEN
        if len(v) > limit:
            raise EventError("invalid_field", f"{name}: longer than {limit} characters", name)
        return v
    if kind in ("double", "float"):
        if not _is_number(v) or not math.isfinite(v):
            raise EventError("invalid_field", f"{name}: expected a finite number, got {_show(v)}", name)
        return float(v)
    if kind in ("int", "long"):
        if not _is_number(v) or not math.isfinite(v):
            raise EventError("invalid_field", f"{name}: expected an integer, got {_show(v)}", name)
        n = int(round(v))
        low, high = _INT32 if kind == "int" else _INT64
        if not low <= n <= high:
            raise EventError("invalid_field", f"{name}: {n} is out of range", name)
        return n
    if kind == "boolean":
        if not isinstance(v, bool):
            raise EventError("invalid_field", f"{name}: expected true or false, got {_show(v)}", name)
        return v
    if kind == "enum":
        if not isinstance(v, str) or v not in spec.symbols or v == UNKNOWN_SYMBOL:
            allowed = sorted(spec.symbols - {UNKNOWN_SYMBOL})
            raise EventError("invalid_enum", f"{name}: {_show(v)} is not one of {allowed}", name)
        return v
    if kind == "timestamp":
        return parse_client_time(v, name)
    raise EventError("unsupported_field", f"{name}: clients cannot set this field", name)


def _show(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, (bytes, bytearray)) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_client_time(v: Any, name: str = "client_time") -> int:
    """Epoch milliseconds of a client timestamp: epoch ms (number or digit string) or ISO 8601 with offset."""
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v.strip())
    if _is_number(v):
        if not math.isfinite(v):
            raise EventError("invalid_timestamp", f"{name}: not a finite number", name)
        ms = int(round(v))
    elif isinstance(v, str):
        text = v.strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise EventError("invalid_timestamp", f"{name}: {_show(v)} is neither epoch milliseconds nor "
                             "ISO 8601", name) from None
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise EventError("invalid_timestamp", f"{name}: {_show(v)} has no UTC offset (add Z or +hh:mm)", name)
        ms = int(round(dt.timestamp() * 1000))
    else:
        raise EventError("invalid_timestamp", f"{name}: expected epoch milliseconds or ISO 8601, got {_show(v)}",
                         name)
    if ms < MIN_CLIENT_TIME_MS:
        hint = " (seconds? expected milliseconds)" if ms > 0 else ""
        raise EventError("invalid_timestamp", f"{name}: {ms} is before 2000-01-01{hint}", name)
    if ms > MAX_CLIENT_TIME_MS:
        raise EventError("invalid_timestamp", f"{name}: {ms} is after 3000-01-01", name)
    return ms


def derived_event_id(event: Mapping[str, Any]) -> str:
    """A stable id for an event sent without one: UUIDv5 of its canonical JSON."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, canonical))




def _event_id(event: Mapping[str, Any]) -> str:
    v = event.get("event_id")
    if v is None:
        return derived_event_id(event)
    if not isinstance(v, str) or not is_event_id(v):
        raise EventError("invalid_event_id", f"event_id: expected a UUID string, got {_show(v)}", "event_id")
    return v.lower()


# ---------------------------------------------------------------- events

@dataclass(frozen=True)
class ParsedEvent:
    """A validated record ready to encode."""
    topic: str
    record_name: str
    record: dict[str, Any]

    @property
    def key(self) -> str:
        return self.record["video_id"]


def bind_to_session(event: dict[str, Any], session: PlaybackSession) -> dict[str, Any]:
    """``event`` with the session's video, session and viewer ids; EventError if it names others."""
    claims = {"video_id": session.video_id, "session_id": session.session_id, "viewer_id": session.viewer_id}
    bound = dict(event)
    for name in SESSION_BOUND:
        value = event.get(name)
        if value is None:
            bound[name] = claims[name]
        elif value != claims[name]:
            if name == "video_id":
                raise EventError("session_wrong_video", f"video_id: the playback session is for another video "
                                 f"than {_show(value)}", name, status=403)
            raise EventError("session_mismatch", f"{name}: {_show(value)} is not the playback session's", name)
    return bound


def parse_event(event: Any, *, ingest_ms: int, country: str | None,
                max_future_skew_ms: int = IngestSettings.max_future_skew_ms,
                session: PlaybackSession | None = None) -> ParsedEvent:
    """One client event as a complete record; raises EventError (without index) naming the bad field.

    With ``session`` the event is bound to it (``bind_to_session``), and a view
    the stream API already recorded for the session cannot be reported again.
    """
    if not isinstance(event, dict):
        raise EventError("invalid_event", f"expected a JSON object, got {type(event).__name__}")
    etype = event.get("type")
    if etype is None:
        raise EventError("missing_field", "type: required", "type")
    if not isinstance(etype, str):
        raise EventError("invalid_enum", f"type: expected a string, got {_show(etype)}", "type")
    etype = TYPE_ALIASES.get(etype, etype)
    if session is not None:
        event = bind_to_session(event, session)
        if etype in VIEW_TYPES and session.view_recorded:
            raise EventError("view_already_recorded", f"type: the stream API recorded this session's {etype} "
                             "already", "type")
    if etype == QUALITY_SWITCH:
        name, topic = QUALITY_RECORD, QUALITY_SWITCHES
    elif etype in playback_types():
        name, topic = PLAYBACK_RECORD, PLAYBACK_EVENTS
    else:
        allowed = sorted(playback_types() | {QUALITY_SWITCH})
        raise EventError("unknown_type", f"type: {_show(etype)} is not one of {allowed}", "type")

    record: dict[str, Any] = {}
    specs = record_fields(name)
    names = {s.name for s in specs}
    for spec in specs:
        fname = spec.name
        if fname in SERVER_FIELDS:
            continue
        if fname == "event_id":
            record[fname] = _event_id(event)
            continue
        if fname == "type" and name == PLAYBACK_RECORD:
            record[fname] = etype
            continue
        if fname == "client_time":
            key = next((k for k in CLIENT_TIME_ALIASES if event.get(k) is not None), None)
            if key is None:
                raise EventError("missing_field", "client_time: required (epoch milliseconds or ISO 8601)",
                                 "client_time")
            record[fname] = parse_client_time(event[key], "client_time")
            continue
        value = event.get(fname)
        if value is None:
            if spec.kind == "enum" and not spec.nullable and spec.default in (None, UNKNOWN_SYMBOL):
                allowed = sorted(spec.symbols - {UNKNOWN_SYMBOL})    # e.g. QualitySwitch.reason: writers
                raise EventError("missing_field", f"{fname}: required, one of {allowed}", fname)  # never send 'unknown'
            if spec.has_default:
                record[fname] = copy.deepcopy(spec.default)
            elif spec.nullable:
                record[fname] = None
            else:
                raise EventError("missing_field", f"{fname}: required", fname)
            continue
        if spec.kind == "other":
            raise EventError("unsupported_field", f"{fname}: clients cannot set this field", fname)
        record[fname] = _coerce(spec, value)
        if (spec.kind in ("double", "float", "int", "long") and fname.endswith(NON_NEGATIVE_SUFFIXES)
                and record[fname] < 0):
            raise EventError("invalid_field", f"{fname}: must not be negative, got {_show(value)}", fname)

    # What the server owns.
    if "schema_version" in names:
        record["schema_version"] = current_version(name)
    if "ingest_time" in names:
        record["ingest_time"] = ingest_ms
    if "country" in names:
        record["country"] = country
    client_ms = record.get("client_time")
    if "event_time" in names:
        record["event_time"] = client_ms if client_ms is not None and client_ms <= ingest_ms + max_future_skew_ms \
            else ingest_ms

    try:
        check_record(record_rules(name), record, for_write=True)
    except ValidationError as exc:
        raise EventError(exc.reason, exc.message, exc.field) from None
    return ParsedEvent(topic, name, record)


def parse_events(events: Sequence[Any], *, ingest_ms: int, country: str | None,
                 max_future_skew_ms: int = IngestSettings.max_future_skew_ms,
                 session: PlaybackSession | None = None) -> list[ParsedEvent]:
    """Every event of a batch, or EventError for the first bad one (with its index)."""
    out = []
    for i, event in enumerate(events):
        try:
            out.append(parse_event(event, ingest_ms=ingest_ms, country=country,
                                   max_future_skew_ms=max_future_skew_ms, session=session))
        except EventError as exc:
            raise exc.at(i) from None
    return out


# ---------------------------------------------------------------- producing

def encode_events(producer: EventProducer, events: Sequence[ParsedEvent]) -> list[tuple[str, Key, bytes]]:
    """(topic, key, bytes) of every event; EventError with the index if the codec refuses one."""
    codec = producer.codec
    out: list[tuple[str, Key, bytes]] = []
    for i, ev in enumerate(events):
        try:
            out.append((ev.topic, ev.key, codec.encode_for_topic(ev.topic, ev.record_name, ev.record)))
        except ValidationError as exc:
            raise EventError(exc.reason, exc.message, exc.field).at(i) from None
        except EncodeError as exc:
            raise EventError(exc.reason, exc.message).at(i) from None
    return out


router = APIRouter(tags=["events"], responses=responses(400, 401, 403, 413, 415, 429, 503))


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise RequestError(400, "invalid_content_length", f"Content-Length {length!r} is not a number") from None
        if declared > limit:
            raise RequestError(413, "body_too_large", f"body of {declared} bytes exceeds {limit}")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise RequestError(413, "body_too_large", f"body exceeds {limit} bytes")
    return bytes(buf)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# The ingest rate at the edge (rate() of the first); the sink's counters say what reached ClickHouse.
INGESTED = Counter("framelog_events_ingested_total", "Events acknowledged by the broker (202)", ["topic"])
REFUSED = Counter("framelog_event_batches_refused_total", "Batches answered 4xx/503", ["reason"])


def _session(token: str | None, producer: bool, secret: bytes) -> PlaybackSession | None:
    """The batch's verified playback session; None for a producer without one; else RequestError 401."""
    if token is None:
        if producer:
            return None
        raise RequestError(401, "session_required", "events need the playback session GET /v1/stream issued "
                           f"(header {SESSION_HEADER} or the body's \"{SESSION_FIELD}\" field)", field=SESSION_FIELD)
    try:
        return verify_session(token, secret=secret, now=time.time())
    except ExpiredTokenError:
        raise RequestError(401, "session_expired", "the playback session expired; renew it through "
                           "POST /v1/stream/renew", field=SESSION_FIELD) from None
    except TokenError as exc:
        raise RequestError(401, "session_invalid", f"the playback session was refused: {exc.reason}",
                           field=SESSION_FIELD) from None


def _prepare(raw: bytes, content_encoding: str | None, settings: IngestSettings, secret: bytes,
             header_session: str | None, producer: bool, proxy_country: str | None
             ) -> tuple[list[ParsedEvent], PlaybackSession | None]:
    """Decode, parse, check the session and validate the batch: CPU work, run on a worker thread."""
    data = decode_body(raw, content_encoding, settings.max_decoded_bytes, settings.max_gzip_members)
    items, body_session = parse_body(data, settings.max_events)
    if header_session is not None and body_session is not None and header_session != body_session:
        raise RequestError(400, "session_conflict", f"the {SESSION_HEADER} header and the body's session differ",
                           field=SESSION_FIELD)
    session = _session(header_session or body_session, producer, secret)
    country = session.country if session is not None and session.country else proxy_country
    parsed = parse_events(items, ingest_ms=_now_ms(), country=country, max_future_skew_ms=settings.max_future_skew_ms,
                          session=session)
    return parsed, session


def _claim_views(parsed: Sequence[ParsedEvent], session: PlaybackSession | None, claims: Any) -> list[str]:
    """One client-reported view per session whose start the stream API did not record, and one like per
    session (a player cannot inflate engagement_rate); EventError past either."""
    if session is None:
        return []
    claimed: list[str] = []
    for i, p in enumerate(parsed):
        if p.record_name != PLAYBACK_RECORD or p.record["type"] not in VIEW_TYPES | ONCE_PER_SESSION:
            continue
        kind = p.record["type"]
        key = session.session_id if kind in VIEW_TYPES else f"{session.session_id}#{kind}"
        if not claims.claim(key):
            for done in claimed:
                claims.release(done)
            if kind in VIEW_TYPES:
                raise EventError("view_already_recorded", f"type: a {kind} of this session was recorded already",
                                 "type").at(i)
            raise EventError(f"{kind}_already_recorded", f"type: this session sent a {kind} already (one per "
                             "playback session)", "type").at(i)
        claimed.append(key)
    return claimed


class Accepted(BaseModel):
    accepted: int = Field(description="events acknowledged by the broker (acks=all)")


BATCH_SCHEMA = {  # the body as documented; the route parses it itself (gzip, text/plain beacons, caps)
    "oneOf": [
        {"type": "object", "required": ["events"], "properties": {
            "session": {"type": "string", "description": "the playback session (else X-Playback-Session)"},
            "events": {"type": "array", "maxItems": 500, "items": {"type": "object", "required": ["type"],
                       "description": "a PlaybackEvent's or QualitySwitch's fields; see the module docstring"}}}},
        {"type": "array", "items": {"type": "object"}, "description": "a bare array of events"}]}


@router.post("/v1/events", status_code=202, summary="Ingest a batch of playback events", response_model=Accepted,
             openapi_extra={
                 "requestBody": {"required": True, "content": {m: {"schema": BATCH_SCHEMA} for m in (
                     "application/json", "text/plain")}},
                 "parameters": [
                     {"name": SESSION_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
                      "description": "the playback session GET /v1/stream issued"},
                     {"name": "Content-Encoding", "in": "header", "required": False,
                      "schema": {"type": "string", "enum": ["gzip", "identity"]}}]})
async def post_events(request: Request, svc: Svc) -> JSONResponse:
    """Check the client's rate, the session and the whole batch, produce it, answer 202 once acknowledged."""
    settings = svc.ingest
    trust = svc.trust
    claimed: list[str] = []
    try:
        wait = trust.client_wait(request)
        if wait:
            raise RequestError(429, "rate_limited", "too many requests from this client address",
                               headers={"Retry-After": retry_after(wait)})
        check_content_type(request.headers.get("content-type"))
        raw = await _read_body(request, settings.max_body_bytes)
        header_session = request.headers.get(SESSION_HEADER)
        producer = header_session is None and producer_authorized(request)
        parsed, session = await run_in_threadpool(
            _prepare, raw, request.headers.get("content-encoding"), settings, trust.secret, header_session, producer,
            trust.country(request))
        if session is not None:
            wait = trust.sessions.take(session.session_id, len(parsed))
            if wait:
                raise RequestError(429, "session_rate_limited", "too many events for this playback session",
                                   headers={"Retry-After": retry_after(wait)})
        claimed = _claim_views(parsed, session, trust.views)
        sender = svc.sender
        encoded = await run_in_threadpool(encode_events, sender.producer, parsed)
    except RequestError as exc:
        for sid in claimed:
            trust.views.release(sid)
        log.info("POST /v1/events refused (%d %s): %s", exc.status, exc.reason, exc.message)
        REFUSED.labels(exc.reason).inc()
        raise
    try:
        await sender.send_encoded(encoded, settings.delivery_timeout, "event")
    except DeliveryError as exc:
        for sid in claimed:                 # the client resends the same batch: its view must pass again
            trust.views.release(sid)
        log.warning("POST /v1/events: %s", exc)
        REFUSED.labels(exc.reason).inc()
        raise ApiError(503, f"the event log did not acknowledge the batch: {exc.message}", {"Retry-After": "1"},
                       code=exc.reason, retryable=True) from None
    for topic, n in collections.Counter(p.topic for p in parsed).items():
        INGESTED.labels(topic).inc(n)
    return JSONResponse({"accepted": len(parsed)}, status_code=202)
