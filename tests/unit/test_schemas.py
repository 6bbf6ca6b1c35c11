"""Every .avsc parses and follows framelog's schema conventions."""
from __future__ import annotations

import json

import fastavro
import pytest

from framelog.schemas import NAMESPACE, all_schemas, current_version, load_schema, raw_schema, schema_names
from framelog.streams.topics import all_topics

EXPECTED = {"UploadCompleted", "VideoDeleted", "StageRequest", "StageTransition", "AssetPublished", "PlaybackEvent",
            "QualitySwitch", "TierTransition", "RestoreRequest", "CacheWarm", "CacheInvalidate", "DeadLetter",
            "AccessPolicy", "ShareLink", "WebhookEndpoint", "WebhookDelivery", "ChunkRequest", "ChunkTransition"}


def _walk_named(schema):
    """Yield every named type (record, enum) inside a raw schema."""
    if isinstance(schema, list):
        for s in schema:
            yield from _walk_named(s)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            yield schema
        for key in ("fields", "items", "values"):
            if key in schema:
                yield from _walk_named(schema[key])
        if "type" in schema and isinstance(schema["type"], (dict, list)):
            yield from _walk_named(schema["type"])


def test_every_event_type_has_a_schema():
    assert set(schema_names()) == EXPECTED


def test_every_topic_names_existing_schemas():
    for spec in all_topics():
        assert spec.schemas, spec.name
        assert set(spec.schemas) <= EXPECTED, spec.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_schema_parses_and_is_named_in_the_namespace(name):
    parsed = load_schema(name)
    assert parsed["name"] == f"{NAMESPACE}.{name}"
    assert fastavro.parse_schema(raw_schema(name), named_schemas={})["name"] == parsed["name"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_common_fields(name):
    fields = {f["name"]: f for f in raw_schema(name)["fields"]}
    assert fields["event_id"]["type"] == "string"
    assert fields["schema_version"]["type"] == "int"
    assert current_version(name) >= 1
    assert fields["event_time"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert list(fields)[:3] == ["event_id", "schema_version", "event_time"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_field_and_type_is_documented(name):
    schema = raw_schema(name)
    assert schema.get("doc")
    for named in _walk_named(schema):
        assert named.get("doc"), named["name"]
        for f in named.get("fields", []):
            assert f.get("doc"), f"{named['name']}.{f['name']} has no doc"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_enums_have_a_fallback_default(name):
    for named in _walk_named(raw_schema(name)):
        if named["type"] == "enum":
            assert named.get("default") == "unknown", named["name"]
            assert "unknown" in named["symbols"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_nullable_fields_default_to_null(name):
    for f in raw_schema(name)["fields"]:
        if isinstance(f["type"], list) and "null" in f["type"]:
            assert f["type"][0] == "null" and f.get("default", "missing") is None, f["name"]


def test_all_schemas_is_parsed_and_cached():
    schemas = all_schemas()
    assert set(schemas) == EXPECTED
    assert schemas["PlaybackEvent"] is load_schema("PlaybackEvent")


def test_raw_schema_is_a_fresh_copy():
    raw_schema("CacheWarm")["fields"].clear()
    assert raw_schema("CacheWarm")["fields"]


def test_unknown_schema():
    with pytest.raises(KeyError):
        raw_schema("NoSuchEvent")


def test_playback_event_types_are_documented_in_the_record_doc():
    schema = raw_schema("PlaybackEvent")
    symbols = next(f["type"]["symbols"] for f in schema["fields"] if f["name"] == "type")
    assert {"view_start", "video_view", "progress", "pause", "seek", "rebuffer_start", "rebuffer_end", "error",
            "ended", "share", "like"} <= set(symbols)
    for s in symbols:
        if s != "unknown":
            assert s in schema["doc"], s
    json.dumps(schema)


def test_data_written_with_a_superseded_schema_stays_readable():
    """history/ keeps old versions: v1 PlaybackEvents on the log decode with today's codec."""
    import io
    import uuid

    import fastavro

    from framelog.schemas import historical_schemas
    from framelog.schemas.codec import MARKER, AvroCodec, schema_fingerprint

    v1 = next(s for s in historical_schemas() if s["name"] == "PlaybackEvent")
    record = {"event_id": str(uuid.uuid4()), "schema_version": 1, "event_time": 1_700_000_000_000,
              "session_id": "s", "viewer_id": "v", "video_id": "abc", "type": "like", "position_seconds": 1.0,
              "watch_time_delta_seconds": 0.0, "rendition": None, "country": None, "device": None,
              "client_time": 1_700_000_000_000, "ingest_time": 1_700_000_000_000}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(v1), record)
    name, value = AvroCodec().decode(MARKER + schema_fingerprint(v1) + buf.getvalue())
    assert name == "PlaybackEvent" and value["type"] == "like" and value["startup_time_ms"] is None
