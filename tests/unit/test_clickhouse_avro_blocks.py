"""Single-object records -> one Avro container block (what the sink lets ClickHouse decode)."""
import io
import re
import uuid
from importlib import resources

import fastavro

from framelog.schemas import raw_schema
from framelog.schemas.codec import MILLIS, AvroCodec
from framelog.schemas.events import FIELD_RULES, new_event
from framelog.sinks.clickhouse.avro_blocks import AvroBlockWriter, zigzag_varint

CODEC = AvroCodec(timestamps=MILLIS)
DATETIME_CODEC = AvroCodec()
WRITER = AvroBlockWriter.for_record("PlaybackEvent")


def _event(i: int, **kw) -> dict:
    fields = dict(session_id=f"s{i}", viewer_id=f"u{i}", video_id=f"video-{i % 3}", type="view_start" if i % 4 == 0
                  else "progress", position_seconds=float(i), watch_time_delta_seconds=5.0, rendition="720p",
                  country=None, device="web", startup_time_ms=300 if i % 4 == 0 else None)
    fields.update(kw)
    return new_event("PlaybackEvent", **fields)


def _read_block(data: bytes) -> list[dict]:
    return list(fastavro.reader(io.BytesIO(data)))


def test_zigzag_varint_matches_avro():
    for n in (0, 1, -1, 63, 64, 300, 2**31, 2**62):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, {"type": "long"}, n)
        assert zigzag_varint(n) == buf.getvalue()


def test_block_is_a_container_of_the_bodies_plus_kafka_coordinates():
    events = [_event(i) for i in range(40)]
    values = [CODEC.encode("PlaybackEvent", e) for e in events]
    offsets = list(range(1000, 1040))
    block = WRITER.build("playback.events", 4, values, offsets, set())
    assert block is not None and block.rows == 40 and block.duplicates == 0
    rows = _read_block(block.data)
    for row, e, off in zip(rows, events, offsets):
        decoded = DATETIME_CODEC.decode(CODEC.encode("PlaybackEvent", e)).value
        row["event_id"] = str(row["event_id"])                # the block's schema says logicalType uuid
        assert {k: row[k] for k in decoded} == decoded
        assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("playback.events", 4, off)
    assert block.event_ids == [e["event_id"] for e in events]
    assert block.type_counts == {"view_start": 10, "progress": 30}


def test_repeated_event_ids_are_left_out_of_the_block():
    events = [_event(i) for i in range(5)]
    values = [CODEC.encode("PlaybackEvent", e) for e in events]
    retry = values[1]                                   # a client retry: same event, later offset
    block = WRITER.build("t", 0, values + [retry], list(range(6)), {events[0]["event_id"]})
    assert block.duplicates == 2
    assert block.offsets == [1, 2, 3, 4]
    assert [r["kafka_offset"] for r in _read_block(block.data)] == [1, 2, 3, 4]


def test_records_the_engine_path_cannot_take_send_the_batch_to_the_python_path():
    good = CODEC.encode("PlaybackEvent", _event(1))
    shouting = CODEC.encode("PlaybackEvent", _event(2, event_id=str(uuid.uuid4()).upper()))
    other_record = CODEC.encode("QualitySwitch", new_event(
        "QualitySwitch", session_id="s", viewer_id="u", video_id="v", from_quality="720p", to_quality="1080p",
        bandwidth=5_000_000, buffer_level=3.0, reason="bandwidth"))
    assert WRITER.build("t", 0, [good, shouting], [0, 1], set()) is None
    assert WRITER.build("t", 0, [good, other_record], [0, 1], set()) is None
    assert WRITER.build("t", 0, [good, good[:30]], [0, 1], set()) is None      # cut inside the skipped fields
    assert WRITER.build("t", 0, [good, b"\x00\x00\x00\x00\x01" + good[10:]], [0, 1], set()) is None   # Confluent
    assert WRITER.build("t", 0, [good], [0], set()) is not None


def test_constraints_cover_the_semantic_rules_of_both_raw_tables():
    """Migration 0003 must check in SQL what FIELD_RULES checks in Python (the engine path relies on it)."""
    sql = (resources.files("framelog.sinks.clickhouse") / "migrations" / "0003_raw_event_constraints.sql").read_text()
    for record, table in (("PlaybackEvent", "playback_events"), ("QualitySwitch", "quality_switches")):
        checks = [line for line in sql.splitlines() if line.startswith(f"ALTER TABLE {table} ADD CONSTRAINT")]
        ruled = {f["name"] for f in raw_schema(record)["fields"]} & set(FIELD_RULES) - {"event_id"}  # UUID column
        missing = {f for f in ruled if not any(re.search(rf"CHECK .*\b{f}\b", line) for line in checks)}
        assert not missing, f"{table}: no constraint for {sorted(missing)}"


def test_kafka_offsets_of_every_size_round_trip():
    offsets = [0, 1, 63, 64, 65, 127, 128, 8191, 8192, 2**21, 2**40 + 5, 2**62]
    values = [CODEC.encode("PlaybackEvent", _event(i)) for i in range(len(offsets))]
    block = WRITER.build("t", 7, values, offsets, set())
    assert [r["kafka_offset"] for r in _read_block(block.data)] == offsets
