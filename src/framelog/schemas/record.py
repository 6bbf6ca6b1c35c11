"""The base of the typed event records (schemas/records.py, generated from the .avsc files).

A record knows its Avro record name, so a producer is told only where to send
it (``producer.emit(topic, record)``), never what it is. ``to_avro`` gives the
dict the codec writes; ``from_avro`` builds a record from a decoded dict. The
.avsc files stay the single source of truth: scripts/gen_records.py writes the
classes and tests/unit/test_records.py checks them against the schemas.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from framelog.core.clock import Clock

# timestamp-millis: an aware datetime, or epoch milliseconds (what a MILLIS codec decodes)
Timestamp = datetime | int


def now_millis(clock: Clock | None = None) -> datetime:
    """Now (or the clock's now) cut to the millisecond, so it survives an Avro round trip unchanged."""
    now = clock.now() if clock is not None else datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _plain(value: Any) -> Any:
    """What Avro writes: nested records as dicts, arrays as lists, maps as dicts."""
    if isinstance(value, AvroRecord):
        return value.to_avro()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class AvroRecord:
    """A frozen dataclass whose fields are an Avro record's, in the schema's order."""

    AVRO_NAME: ClassVar[str]                                   # short record name, e.g. "Rendition"
    _NESTED: ClassVar[Mapping[str, type[AvroRecord]]] = {}     # array-of-record fields -> item class
    _CONTAINERS: ClassVar[frozenset[str]] = frozenset()        # array and map fields (copied on the way out)

    def to_avro(self) -> dict[str, Any]:
        """The record as the codec writes it (every field, in schema order)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = _plain(value) if f.name in self._CONTAINERS else value
        return out

    @classmethod
    def from_avro(cls, value: Mapping[str, Any]) -> Self:
        """A record from a decoded dict; an unknown field name is a TypeError (the schema drifted)."""
        fields = dict(value)
        for name, item in cls._NESTED.items():
            if fields.get(name) is not None:
                fields[name] = tuple(item.from_avro(v) for v in fields[name])
        return cls(**fields)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EventRecord(AvroRecord):
    """A top-level event (one .avsc file); every one carries event_id, schema_version and event_time."""

    _TIMESTAMPS: ClassVar[tuple[str, ...]] = ()   # timestamp fields that default to the event time

    event_id: str
    schema_version: int
    event_time: Timestamp

    def __post_init__(self) -> None:
        for name in self._TIMESTAMPS:           # e.g. uploaded_at, failed_at: left out = when it happened
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.event_time)

    @property
    def record_name(self) -> str:
        return self.AVRO_NAME

