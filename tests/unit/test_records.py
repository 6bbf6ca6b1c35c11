"""The typed event records (schemas/records.py) cannot drift from the .avsc files.

Each class is checked against its schema: field names and order, Python types
for the Avro types, which fields are optional and their defaults, enum symbols;
the generated module must equal what the generator writes today; a record
encodes to the same bytes as the dict the codec always took.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import NoneType, UnionType
from typing import Any

import pytest

from framelog.schemas import gen_records, raw_schema, records, schema_names, short_name
from framelog.schemas.codec import AvroCodec
from framelog.schemas.events import new_event
from framelog.schemas.record import AvroRecord, EventRecord

PRIMITIVE = {"string": str, "int": int, "long": int, "float": float, "double": float, "boolean": bool,
             "bytes": bytes}


def test_generated_module_is_up_to_date():
    current = gen_records.OUTPUT.read_text(encoding="utf-8")
    assert current == gen_records.render(), "run: python -m framelog.schemas.gen_records"


def test_one_record_class_per_schema():
    assert sorted(records.RECORDS) == list(schema_names())
    for name, cls in records.RECORDS.items():
        assert cls.AVRO_NAME == name and issubclass(cls, EventRecord)


def _expected(t: Any, hints_of: Any) -> Any:
    """The Python type an Avro type maps to (as get_type_hints evaluates the annotation)."""
    if isinstance(t, str):
        return NoneType if t == "null" else PRIMITIVE[t]
    if isinstance(t, list):
        parts = [_expected(x, hints_of) for x in t if x != "null"] + ([NoneType] if "null" in t else [])
        return typing.Union[tuple(parts)] if len(parts) > 1 else parts[0]  # noqa: UP007
    if t.get("logicalType") == "timestamp-millis":
        return datetime | int
    kind = t["type"]
    if kind == "enum":
        return typing.Literal[tuple(t["symbols"])]
    if kind == "array":
        return Sequence[_expected(t["items"], hints_of)]
    if kind == "map":
        return Mapping[str, _expected(t["values"], hints_of)]
    if kind == "record":
        cls = getattr(records, short_name(t["name"]))
        _check_class(cls, t)
        return cls
    return PRIMITIVE[kind]


def _same_type(actual: Any, expected: Any) -> bool:
    if isinstance(actual, UnionType) or typing.get_origin(actual) is typing.Union:
        return set(typing.get_args(actual)) == set(typing.get_args(expected))
    return actual == expected


def _check_class(cls: type[AvroRecord], schema: dict[str, Any]) -> None:
    fields = dataclasses.fields(cls)
    assert [f.name for f in fields] == [f["name"] for f in schema["fields"]], cls.__name__
    hints = typing.get_type_hints(cls, vars(records))
    top = issubclass(cls, EventRecord)
    for f, avro in zip(fields, schema["fields"]):
        where = f"{cls.__name__}.{f.name}"
        t = avro["type"]
        expected = _expected(t, hints)
        stamp_default = (top and isinstance(t, dict) and t.get("logicalType") == "timestamp-millis"
                         and "default" not in avro and f.name != "event_time")
        if stamp_default:                   # left out: the event time (filled after construction)
            expected = datetime | int | None
            assert f.default is None and f.name in cls._TIMESTAMPS, where
        assert _same_type(hints[f.name], expected), f"{where}: {hints[f.name]} is not {expected}"
        if top and f.name in ("event_id", "event_time"):
            assert f.default_factory is not dataclasses.MISSING, where
        elif "default" in avro:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if isinstance(default, tuple):
                default = list(default)
            assert default == avro["default"], f"{where}: default {default!r} is not {avro['default']!r}"
        elif not stamp_default:
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, \
                f"{where} is required by the schema but has a default"
        if isinstance(t, dict) and t.get("type") in ("array", "map"):
            assert f.name in cls._CONTAINERS, where


@pytest.mark.parametrize("name", schema_names())
def test_record_class_matches_schema(name):
    _check_class(records.RECORDS[name], raw_schema(name))


SAMPLES: dict[str, dict[str, Any]] = {
    "AccessPolicy": dict(video_id="v-1", owner_id="u", visibility="public"),
    "AssetPublished": dict(video_id="v-1", job_id="j", master_playlist_key="m.m3u8", renditions=[records.Rendition(
        name="720p", width=1280, height=720, bandwidth=3, average_bandwidth=2, codecs="avc1", playlist_key="p")]),
    "CacheInvalidate": dict(video_id="v-1", paths=["/a"]),
    "CacheWarm": dict(video_id="v-1", paths=["/a", "/b"], providers=["primary"]),
    "ChunkRequest": dict(video_id="v-1", job_id="j", chunk_index=0, chunk_count=2, kind="video", start_seconds=0.0,
                         end_seconds=60.0, first_segment=0, source_key="k", plan_key="p", rungs=[records.ChunkRung(
                             name="720p", width=1280, height=720, video_bitrate=1, maxrate=2, bufsize=3)]),
    "ChunkTransition": dict(video_id="v-1", job_id="j", chunk_index=1, chunk_count=2, kind="audio", start_seconds=0.0,
                            end_seconds=61.5, state="succeeded", outputs={"manifest_key": "m"}),
    "DeadLetter": dict(original_topic="t", original_value=b"\x00", reason="r", error="e"),
    "PlaybackEvent": dict(session_id="s", viewer_id="w", video_id="v-1", type="progress", client_time=5),
    "QualitySwitch": dict(session_id="s", viewer_id="w", video_id="v-1", from_quality="a", to_quality="b",
                          bandwidth=1, buffer_level=2.0, reason="manual"),
    "RestoreRequest": dict(video_id="v-1", to_tier="hot"),
    "ShareLink": dict(video_id="v-1", token_id="t", action="issued"),
    "StageRequest": dict(job_id="j", video_id="v-1", stage="transcode", inputs={"a": "b"}),
    "StageTransition": dict(video_id="v-1", job_id="j", stage="transcode", state="started"),
    "TierTransition": dict(video_id="v-1", rendition="720p", from_tier="hot", to_tier="cold", rule="age",
                           age_days=1.5, access_count=0),
    "UploadCompleted": dict(video_id="v-1", object_key="k", size_bytes=1, sha256="0" * 64, content_type="video/mp4",
                            owner_id="u"),
    "VideoDeleted": dict(video_id="v-1"),
    "WebhookDelivery": dict(endpoint_id="e", message_id="m", event_type="x", video_id="v-1", payload="{}",
                            outcome="queued"),
    "WebhookEndpoint": dict(endpoint_id="e", action="registered", owner_id="u", url="http://x"),
}


@pytest.mark.parametrize("name", schema_names())
def test_record_round_trip_and_wire_bytes(name):
    """A record encodes like the dict new_event built, and decodes back to an equal record."""
    codec = AvroCodec(None)
    cls = records.RECORDS[name]
    record = cls(**SAMPLES[name], event_time=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    as_dict = record.to_avro()
    assert list(as_dict) == [f["name"] for f in raw_schema(name)["fields"]]
    data = codec.encode(name, as_dict)
    fields = {k: ([r.to_avro() for r in v] if k in ("renditions", "rungs") else v) for k, v in SAMPLES[name].items()}
    old_way = new_event(name, event_id=record.event_id, event_time=record.event_time, **fields)
    assert codec.encode(name, old_way) == data          # the wire format did not change
    decoded = codec.decode(data)
    assert decoded.name == name
    again = cls.from_avro(decoded.value)
    assert codec.encode(name, again.to_avro()) == data
    for stamp in cls._TIMESTAMPS:
        assert getattr(record, stamp) == SAMPLES[name].get(stamp, record.event_time)


def test_unknown_field_is_refused():
    with pytest.raises(TypeError):
        records.VideoDeleted(video_id="v-1", vidoe_id="typo")
    with pytest.raises(TypeError):
        records.VideoDeleted.from_avro({"video_id": "v-1", "extra": 1})


def test_records_are_frozen():
    record = records.VideoDeleted(video_id="v-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.video_id = "v-2"  # type: ignore[misc]
    assert record.schema_version == 1 and record.record_name == "VideoDeleted"
