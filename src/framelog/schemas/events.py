"""Building event dicts and checking their semantic rules.

``new_event`` fills what every event carries (event_id, schema_version,
event_time) and the schema's defaults, so producers state only the facts.
``validate`` checks what Avro cannot express: ids well-formed, counts not
negative, fractions within 0..1, the enum fallback symbol never written.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from framelog.core.clock import Clock
from framelog.core.errors import InvalidIdError
from framelog.core.ids import is_event_id, new_event_id, validate_video_id
from framelog.schemas import current_version, raw_schema, schema_names
from framelog.streams.exceptions import ValidationError

# Enum symbol that readers fall back to for symbols added by newer writers.
UNKNOWN_SYMBOL = "unknown"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Check = Callable[[Any], "str | None"]   # returns a reason-message, or None when fine


def _uuid(v: Any) -> str | None:
    return None if is_event_id(v) else f"expected a UUID string, got {v!r}"


def _video_id(v: Any) -> str | None:
    try:
        validate_video_id(v)
    except InvalidIdError as exc:
        return str(exc)
    return None


def _non_empty(v: Any) -> str | None:
    return None if isinstance(v, str) and v else f"expected a non-empty string, got {v!r}"


def _at_least(low: float) -> Check:
    def check(v: Any) -> str | None:
        if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= low):
            return None
        return f"expected a number >= {low:g}, got {v!r}"
    return check


def _fraction(v: Any) -> str | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0:
        return None
    return f"expected a fraction within [0, 1], got {v!r}"


def _sha256(v: Any) -> str | None:
    return None if isinstance(v, str) and _SHA256.match(v) else f"expected 64 lower-case hex digits, got {v!r}"


def _timestamp(v: Any) -> str | None:
    if isinstance(v, datetime):
        return None if v.tzinfo is not None else f"naive datetime {v!r}: pass a timezone-aware one"
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return None
    return f"expected an aware datetime or epoch milliseconds, got {v!r}"


# Field name -> rule; applies to every record that has a field of that name.
FIELD_RULES: dict[str, tuple[str, Check]] = {
    "event_id": ("invalid_event_id", _uuid),
    "schema_version": ("invalid_field", _at_least(1)),
    "event_time": ("invalid_timestamp", _timestamp),
    "video_id": ("invalid_video_id", _video_id),
    "job_id": ("invalid_field", _non_empty),
    "stage": ("invalid_field", _non_empty),
    "session_id": ("invalid_field", _non_empty),
    "viewer_id": ("invalid_field", _non_empty),
    "object_key": ("invalid_field", _non_empty),
    "original_topic": ("invalid_field", _non_empty),
    "sha256": ("invalid_field", _sha256),
    "attempt": ("invalid_field", _at_least(1)),
    "progress": ("invalid_field", _fraction),
    "size_bytes": ("invalid_field", _at_least(0)),
    "not_before": ("invalid_field", _at_least(0)),
    "duration_ms": ("invalid_field", _at_least(0)),
    "position_seconds": ("invalid_field", _at_least(0)),
    "watch_time_delta_seconds": ("invalid_field", _at_least(0)),
    "bandwidth": ("invalid_field", _at_least(0)),
    "buffer_level": ("invalid_field", _at_least(0)),
    "object_count": ("invalid_field", _at_least(0)),
    "access_count": ("invalid_field", _at_least(0)),
    "age_days": ("invalid_field", _at_least(0)),
    "offset": ("invalid_field", _at_least(0)),
    "partition": ("invalid_field", _at_least(0)),
}


@dataclass(frozen=True)
class RecordRules:
    """The precomputed checks of one record type (computed once, run per record)."""
    name: str
    fields: tuple[tuple[str, str, Check], ...]           # (field, reason, check)
    enums: tuple[tuple[str, frozenset[str]], ...]        # (field, symbols)
    field_names: frozenset[str]
    timestamps: tuple[str, ...]                          # timestamp-millis fields, event_time first


def _is_timestamp(t: Any) -> bool:
    return isinstance(t, dict) and t.get("logicalType") == "timestamp-millis"


def rules_for_schema(schema: Mapping[str, Any]) -> RecordRules:
    """Derive the checks of a (raw, unparsed) record schema."""
    fields, enums, stamps = [], [], []
    for f in schema["fields"]:
        t = f["type"]
        if f["name"] in FIELD_RULES:
            reason, check = FIELD_RULES[f["name"]]
            fields.append((f["name"], reason, check))
        if isinstance(t, dict) and t.get("type") == "enum":
            enums.append((f["name"], frozenset(t["symbols"])))
        if _is_timestamp(t):
            stamps.append(f["name"])
    stamps.sort(key=lambda n: n != "event_time")
    return RecordRules(schema["name"].rsplit(".", 1)[-1], tuple(fields), tuple(enums),
                       frozenset(f["name"] for f in schema["fields"]), tuple(stamps))


@cache
def record_rules(name: str) -> RecordRules:
    if name not in schema_names():
        raise ValidationError("unknown_record", f"no schema named {name!r}")
    return rules_for_schema(raw_schema(name))


def check_record(rules: RecordRules, record: Mapping[str, Any], *, for_write: bool = False) -> None:
    """Raise ValidationError on the first broken rule.

    ``for_write`` additionally refuses the enum fallback symbol: only readers
    may produce it, when a newer writer used a symbol they do not know.
    """
    if not isinstance(record, Mapping):
        raise ValidationError("invalid_record", f"{rules.name}: expected a mapping, got {type(record).__name__}")
    get = record.get
    for name, reason, check in rules.fields:
        problem = check(get(name))
        if problem is not None:
            raise ValidationError(reason, f"{rules.name}.{name}: {problem}", field=name)
    for name, symbols in rules.enums:
        value = get(name)
        if value not in symbols or (for_write and value == UNKNOWN_SYMBOL):
            allowed = sorted(symbols - {UNKNOWN_SYMBOL})
            raise ValidationError("invalid_enum", f"{rules.name}.{name}: {value!r} is not one of {allowed}",
                                  field=name)


def validate(name: str, record: Mapping[str, Any], *, for_write: bool = False) -> None:
    """Check the semantic rules of a record of type ``name`` (see module doc)."""
    check_record(record_rules(name), record, for_write=for_write)


def _now_ms(clock: Clock | None) -> datetime:
    now = clock.now() if clock is not None else datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)   # what Avro millis keep


def new_event(name: str, /, *, clock: Clock | None = None, **fields: Any) -> dict[str, Any]:
    """A complete event dict of type ``name``.

    Fills event_id (new UUID), schema_version (the schema's current version),
    event_time (now, at millisecond precision so it survives a round trip),
    every other timestamp field left out (e.g. uploaded_at, failed_at) with the
    event time, and the schema's defaults. Unknown field names are an error
    (a typo would otherwise be dropped silently by the writer).
    """
    rules = record_rules(name)
    unknown = set(fields) - rules.field_names
    if unknown:
        raise ValidationError("unknown_field", f"{name} has no field(s) {sorted(unknown)}", field=sorted(unknown)[0])
    record: dict[str, Any] = {"event_id": new_event_id(), "schema_version": current_version(name)}
    record.update(fields)
    record.setdefault("event_time", _now_ms(clock))
    for stamp in rules.timestamps:
        record.setdefault(stamp, record["event_time"])
    for f in _defaults(name):
        if f[0] not in record:
            record[f[0]] = copy.deepcopy(f[1])
    return record


@cache
def _defaults(name: str) -> tuple[tuple[str, Any], ...]:
    return tuple((f["name"], f["default"]) for f in raw_schema(name)["fields"] if "default" in f)
