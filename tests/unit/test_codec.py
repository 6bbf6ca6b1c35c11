"""The Avro codec: round trips, wire layout, evolution, topic rules and precise decode errors."""
from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from framelog.core.config import get_config
from framelog.schemas import raw_schema, schema_names
from framelog.schemas.codec import CONFLUENT, MILLIS, SINGLE_OBJECT, AvroCodec, default_codec, schema_fingerprint
from framelog.schemas.events import new_event, validate
from framelog.streams import topics
from framelog.streams.exceptions import DecodeError, EncodeError, TopicSchemaError, ValidationError

T0 = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
VID = "vid_01"


def sample(name: str) -> dict:
    """A valid event of every type, with every optional field set."""
    fields = {
        "UploadCompleted": dict(video_id=VID, object_key="uploads/vid_01/original", size_bytes=123456789,
                                sha256="ab" * 32, content_type="video/mp4", owner_id="u1",
                                original_filename="holiday.mp4"),
        "VideoDeleted": dict(video_id=VID, owner_id="u1", requested_by="admin", reason="dmca"),
        "StageRequest": dict(job_id="j1", video_id=VID, stage="transcoding", attempt=2,
                             inputs={"object_key": "uploads/vid_01/original"}, not_before=1_700_000_000_000),
        "StageTransition": dict(video_id=VID, job_id="j1", stage="transcoding", state="retrying", attempt=2,
                                progress=0.5, duration_ms=1234, error_type="timeout", error_message="too slow",
                                outputs={"a": "b"}),
        "ChunkRequest": dict(video_id=VID, job_id="j1", chunk_index=3, chunk_count=10, job_count=11, kind="video",
                             start_seconds=180.0, end_seconds=240.0, attempt=2, first_segment=18,
                             source_key="uploads/vid_01/original", plan_key="work/vid_01/j1/transcoding/p.json",
                             rungs=[dict(name="720p", width=1280, height=720, video_bitrate=2_500_000,
                                         maxrate=2_750_000, bufsize=5_000_000, codec="h264")],
                             not_before=1_700_000_000_000, priority="high"),
        "ChunkTransition": dict(video_id=VID, job_id="j1", chunk_index=10, chunk_count=10, job_count=11, kind="audio",
                                start_seconds=0.0, end_seconds=600.0, state="failed", attempt=1, plan_key="p",
                                worker="h:1", retryable=False, duration_ms=5, error_type="corrupt",
                                error_message="corrupt: undecodable frames at 00:01:00-00:01:10",
                                outputs={"manifest_key": "m"}),
        "AssetPublished": dict(video_id=VID, job_id="j1", renditions=[
            dict(name="1080p", width=1920, height=1080, bandwidth=5_600_000, average_bandwidth=5_100_000,
                 codecs="avc1.640028,mp4a.40.2", frame_rate=29.97, playlist_key="hls/vid_01/1080p/index.m3u8",
                 segment_count=10, size_bytes=40_000_000),
            dict(name="360p", width=640, height=360, bandwidth=900_000, average_bandwidth=800_000,
                 codecs="avc1.4d401e,mp4a.40.2", frame_rate=29.97, playlist_key="hls/vid_01/360p/index.m3u8",
                 segment_count=10, size_bytes=6_000_000)],
            master_playlist_key="hls/vid_01/master.m3u8", duration_seconds=60.0,
            thumbnails=["thumbs/vid_01/0.jpg"], storyboard_key="thumbs/vid_01/sb.jpg",
            chapters_key="hls/vid_01/chapters.vtt", key_id="k1", metadata={"loudness_lufs": "-16.2"}),
        "PlaybackEvent": dict(session_id="s1", viewer_id="v1", video_id=VID, type="progress", position_seconds=12.5,
                              watch_time_delta_seconds=10.0, rendition="720p", country="DE", device="desktop",
                              client_time=T0),
        "QualitySwitch": dict(session_id="s1", viewer_id="v1", video_id=VID, from_quality="1080p", to_quality="720p",
                              bandwidth=3_000_000, buffer_level=4.5, reason="low_buffer"),
        "TierTransition": dict(video_id=VID, rendition="1080p", object_keys=["hls/vid_01/1080p/seg0.ts"],
                               object_count=1, size_bytes=4_000_000, from_tier="hot", to_tier="warm",
                               storage_class="STANDARD_IA", rule="warm_after_30_days", age_days=31.0, access_count=3),
        "RestoreRequest": dict(video_id=VID, rendition=None, to_tier="hot", reason="playback_requested",
                               requested_by="api"),
        "CacheWarm": dict(video_id=VID, paths=["/hls/vid_01/master.m3u8"], providers=["primary_cdn"],
                          trigger="new_upload"),
        "CacheInvalidate": dict(video_id=VID, paths=["/hls/vid_01/*"], providers=[], reason="republished"),
        "AccessPolicy": dict(video_id=VID, owner_id="alice", workspace_id="ws-1", visibility="share_link",
                             changed_by="alice"),
        "ShareLink": dict(video_id=VID, token_id="jti_1", action="issued", expires_at=T0 + timedelta(minutes=1),
                          actor="alice"),
        "WebhookEndpoint": dict(endpoint_id="ep_0123456789abcdef01234567", action="registered", owner_id="alice",
                                workspace_id="ws-1", url="https://hooks.example.com/framelog",
                                event_types=["video.ready", "video.failed"], secret_salt="c2FsdA", created_at=T0,
                                description="CMS", actor="alice"),
        "WebhookDelivery": dict(endpoint_id="ep_0123456789abcdef01234567", message_id="msg_0123456789abcdef",
                                event_type="video.ready", video_id=VID, occurred_at=T0,
                                payload='{"type":"video.ready"}', outcome="failed", attempt=2, status_code=503,
                                latency_ms=120, error="HTTP 503", next_attempt_at=T0 + timedelta(seconds=10),
                                source_topic="video.assets", source_partition=3, source_offset=42, replay=False),
        "DeadLetter": dict(original_topic="playback.events", partition=3, offset=42, original_key=b"vid_01",
                           original_value=b"\x00garbage", reason="bad_marker", error="first bytes 0067",
                           consumer_group="sink"),
    }[name]
    return new_event(name, event_time=T0, **fields)


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return default_codec(get_config().streams)


# ------------------------------------------------------------------ round trips and layout

@pytest.mark.parametrize("name", schema_names())
def test_every_event_type_round_trips(codec, name):
    event = sample(name)
    data = codec.encode(name, event)
    decoded = codec.decode(data)
    assert decoded.name == name
    assert decoded.value == event
    assert decoded == (name, event)          # a NamedTuple: unpacks as (name, value)


@pytest.mark.parametrize("spec", topics.all_topics(get_config().topics), ids=lambda s: s.name)
def test_every_topic_accepts_its_record_types(codec, spec):
    for name in spec.schemas:
        data = codec.encode_for_topic(spec.name, name, sample(name))
        assert codec.decode_for_topic(spec.name, data).name == name


def _rabin(data: bytes) -> int:
    """CRC-64-AVRO exactly as written in the Avro specification."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def test_single_object_layout(codec):
    import fastavro
    from fastavro.schema import to_parsing_canonical_form
    data = codec.encode("CacheWarm", sample("CacheWarm"))
    assert data[:2] == b"\xc3\x01"
    canonical = to_parsing_canonical_form(fastavro.parse_schema(raw_schema("CacheWarm"), named_schemas={}))
    assert data[2:10] == _rabin(canonical.encode()).to_bytes(8, "little")
    assert data[2:10] == codec.fingerprint("CacheWarm") == schema_fingerprint(raw_schema("CacheWarm"))
    assert codec.wire_format == SINGLE_OBJECT


def test_fingerprint_ignores_docs_and_logical_types():
    schema = raw_schema("CacheWarm")
    stripped = copy.deepcopy(schema)
    stripped["doc"] = "changed"
    for f in stripped["fields"]:
        f.pop("doc")
        if isinstance(f["type"], dict) and f["type"].get("logicalType"):
            f["type"] = "long"
    assert schema_fingerprint(stripped) == schema_fingerprint(schema)


def test_millis_mode_keeps_epoch_milliseconds():
    c = AvroCodec(get_config().topics, timestamps=MILLIS)
    event = sample("PlaybackEvent")
    value = c.decode(c.encode("PlaybackEvent", event)).value
    assert value["event_time"] == int(T0.timestamp() * 1000)
    assert value["client_time"] == int(T0.timestamp() * 1000)
    assert value["session_id"] == "s1"


def test_timestamps_may_be_given_as_milliseconds(codec):
    event = sample("CacheWarm")
    event["event_time"] = int(T0.timestamp() * 1000)
    assert codec.decode(codec.encode("CacheWarm", event)).value["event_time"] == T0


# ------------------------------------------------------------------ new_event and validation

def test_new_event_fills_common_fields_and_defaults():
    e = new_event("UploadCompleted", video_id=VID, object_key="k", size_bytes=1, sha256="0" * 64,
                  content_type="video/mp4", owner_id="u")
    assert len(e["event_id"]) == 36 and e["schema_version"] == 2           # v2 added the priority
    assert e["event_time"].tzinfo is not None and e["event_time"].microsecond % 1000 == 0
    assert e["uploaded_at"] == e["event_time"]
    assert e["original_filename"] == "" and e["priority"] == ""


def test_new_event_rejects_unknown_fields():
    with pytest.raises(ValidationError) as exc:
        new_event("CacheWarm", video_id=VID, paths=[], pathz=[])
    assert exc.value.reason == "unknown_field"


@pytest.mark.parametrize("field,value,reason", [
    ("video_id", "../etc", "invalid_video_id"),
    ("event_id", "not-a-uuid", "invalid_event_id"),
    ("progress", 1.5, "invalid_field"),
    ("attempt", 0, "invalid_field"),
    ("state", "exploded", "invalid_enum"),
    ("state", "unknown", "invalid_enum"),        # the reader's fallback is never written
])
def test_encode_refuses_semantically_invalid_records(codec, field, value, reason):
    event = sample("StageTransition")
    event[field] = value
    with pytest.raises(ValidationError) as exc:
        codec.encode("StageTransition", event)
    assert exc.value.reason == reason and exc.value.field == field


def test_encode_names_the_bad_field_on_type_errors(codec):
    event = sample("UploadCompleted")
    event["content_type"] = 5
    with pytest.raises(EncodeError) as exc:
        codec.encode("UploadCompleted", event)
    assert "content_type" in str(exc.value)
    del event["size_bytes"]
    with pytest.raises(EncodeError):
        codec.encode("UploadCompleted", event)


def test_encode_refuses_extra_fields(codec):
    event = sample("CacheWarm")
    event["surprise"] = 1
    with pytest.raises(EncodeError):
        codec.encode("CacheWarm", event)


def test_decode_for_topic_validates(codec):
    lax = AvroCodec(get_config().topics, validate_on_encode=False)
    event = sample("PlaybackEvent")
    event["video_id"] = "bad/id"
    data = lax.encode("PlaybackEvent", event)
    with pytest.raises(ValidationError) as exc:
        codec.decode_for_topic(topics.PLAYBACK_EVENTS, data)
    assert exc.value.reason == "invalid_video_id"
    assert codec.decode_for_topic(topics.PLAYBACK_EVENTS, data, validate=False).value["video_id"] == "bad/id"
    with pytest.raises(ValidationError):
        validate("PlaybackEvent", event)


# ------------------------------------------------------------------ topics

def test_wrong_record_type_for_topic_is_refused(codec):
    with pytest.raises(TopicSchemaError) as exc:
        codec.encode_for_topic(topics.PLAYBACK_EVENTS, "UploadCompleted", sample("UploadCompleted"))
    assert exc.value.reason == "record_not_allowed"
    with pytest.raises(TopicSchemaError) as exc:
        codec.encode_for_topic("no.such.topic", "CacheWarm", sample("CacheWarm"))
    assert exc.value.reason == "unknown_topic"


def test_decoding_a_record_on_the_wrong_topic_is_refused(codec):
    data = codec.encode("CacheWarm", sample("CacheWarm"))
    with pytest.raises(TopicSchemaError):
        codec.decode_for_topic(topics.UPLOADS, data)


def test_unknown_record(codec):
    with pytest.raises(EncodeError) as exc:
        codec.encode("NoSuchEvent", {})
    assert exc.value.reason == "unknown_record"


# ------------------------------------------------------------------ malformed bytes

@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"\x7b\x22json\x22: 1}", "bad_marker"),
    (b"\xc3\x02" + b"\x00" * 20, "bad_marker"),
    (b"\xc3\x01\x01\x02", "truncated"),
    (b"\xc3\x01" + b"\xff" * 8 + b"\x00", "unknown_fingerprint"),
    (b"\x00\x00\x00\x00\x01\x02", "registry_not_configured"),
])
def test_malformed_bytes_give_a_precise_reason(codec, data, reason):
    with pytest.raises(DecodeError) as exc:
        codec.decode(data)
    assert exc.value.reason == reason
    assert reason in str(exc.value)


def test_not_bytes(codec):
    with pytest.raises(DecodeError) as exc:
        codec.decode("text")  # type: ignore[arg-type]
    assert exc.value.reason == "not_bytes"


def test_every_truncation_is_reported(codec):
    data = codec.encode("StageTransition", sample("StageTransition"))
    for cut in range(10, len(data)):
        with pytest.raises(DecodeError) as exc:
            codec.decode(data[:cut])
        assert exc.value.reason == "truncated", cut


def test_trailing_bytes(codec):
    data = codec.encode("CacheWarm", sample("CacheWarm"))
    with pytest.raises(DecodeError) as exc:
        codec.decode(data + b"\x00")
    assert exc.value.reason == "trailing_bytes"


def test_malformed_body(codec):
    import io

    import fastavro
    # Same layout as StageTransition, but the enum written as a plain int: index 99 names no symbol.
    forged = raw_schema("StageTransition")
    for f in forged["fields"]:
        if f["name"] == "state":
            f["type"] = "int"
    event = sample("StageTransition")
    event["state"] = 99
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(forged, named_schemas={}), event)
    with pytest.raises(DecodeError) as exc:
        codec.decode(b"\xc3\x01" + codec.fingerprint("StageTransition") + body.getvalue())
    assert exc.value.reason == "malformed_body"


# ------------------------------------------------------------------ schema evolution

def _v2_playback() -> dict:
    """PlaybackEvent v2: adds a defaulted field and an enum symbol, removes the (defaulted) device field."""
    schema = raw_schema("PlaybackEvent")
    fields = [f for f in schema["fields"] if f["name"] != "device"]
    for f in fields:
        if f["name"] == "schema_version":
            f["default"] = 2
        if f["name"] == "type":
            f["type"]["symbols"].append("resume")
    fields.append({"name": "bitrate_kbps", "type": "int", "default": 0, "doc": "Bitrate playing, kbit/s."})
    schema["fields"] = fields
    return schema


def test_old_reader_reads_new_writer():
    v2 = _v2_playback()
    new = AvroCodec(get_config().topics, schemas={**{n: raw_schema(n) for n in schema_names()}, "PlaybackEvent": v2})
    old = default_codec(get_config().streams)
    event = sample("PlaybackEvent")
    event.pop("device")
    event.update(schema_version=2, bitrate_kbps=2500, type="resume")
    data = new.encode("PlaybackEvent", event)
    assert data[2:10] != old.fingerprint("PlaybackEvent")

    with pytest.raises(DecodeError) as exc:       # a reader must know the writer schema to resolve
        old.decode(data)
    assert exc.value.reason == "unknown_fingerprint"

    old.register_writer_schema(json.dumps(v2))
    name, value = old.decode_for_topic(topics.PLAYBACK_EVENTS, data)
    assert name == "PlaybackEvent"
    assert "bitrate_kbps" not in value                # added field: dropped by the old reader
    assert value["device"] is None                     # removed field: the old reader's default
    assert value["type"] == "unknown"                  # new symbol: the enum's fallback default
    assert value["schema_version"] == 2
    assert value["session_id"] == "s1" and value["client_time"] == T0


def test_new_reader_reads_old_writer():
    v2 = _v2_playback()
    old = default_codec(get_config().streams)
    new = AvroCodec(get_config().topics, schemas={**{n: raw_schema(n) for n in schema_names()}, "PlaybackEvent": v2})
    new.register_writer_schema(raw_schema("PlaybackEvent"))
    event = sample("PlaybackEvent")
    name, value = new.decode(old.encode("PlaybackEvent", event))
    assert value["bitrate_kbps"] == 0                  # added field: its default
    assert "device" not in value
    assert value["type"] == "progress" and value["schema_version"] == event["schema_version"]
    assert value["watch_time_delta_seconds"] == 10.0


def test_evolution_in_millis_mode():
    v2 = _v2_playback()
    new = AvroCodec(get_config().topics, schemas={**{n: raw_schema(n) for n in schema_names()}, "PlaybackEvent": v2},
                    timestamps=MILLIS)
    new.register_writer_schema(raw_schema("PlaybackEvent"))
    value = new.decode(AvroCodec().encode("PlaybackEvent", sample("PlaybackEvent"))).value
    assert value["event_time"] == int(T0.timestamp() * 1000) and value["bitrate_kbps"] == 0


def test_register_writer_schema_of_unknown_record(codec):
    schema = raw_schema("CacheWarm")
    schema["name"] = "Unheard"
    with pytest.raises(ValueError):
        AvroCodec().register_writer_schema(schema)


# ------------------------------------------------------------------ Confluent wire format

@pytest.fixture()
def registry_config():
    """The configuration with a registry URL; mock:// makes confluent-kafka use its in-memory registry."""
    config = get_config()
    return dataclasses.replace(config, kafka=dataclasses.replace(config.kafka,
                                                                 schema_registry_url="mock://framelog-unit"))


def test_registry_url_selects_the_confluent_wire_format(registry_config):
    codec = default_codec(registry_config.streams)
    assert codec.wire_format == CONFLUENT
    assert default_codec(get_config().streams).wire_format == SINGLE_OBJECT


def test_confluent_layout_and_round_trip(registry_config):
    codec = default_codec(registry_config.streams)
    event = sample("UploadCompleted")
    data = codec.encode_for_topic(topics.UPLOADS, "UploadCompleted", event)
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    registered = codec._registry.client.get_latest_version("framelog.events.UploadCompleted")
    assert registered.schema_id == schema_id
    assert codec.decode_for_topic(topics.UPLOADS, data) == ("UploadCompleted", event)

    other = codec.encode_for_topic(topics.UPLOADS, "VideoDeleted", sample("VideoDeleted"))
    assert int.from_bytes(other[1:5], "big") != schema_id
    assert codec.decode(other).name == "VideoDeleted"


def test_registry_codec_still_reads_single_object_data(registry_config):
    plain = default_codec(get_config().streams).encode("CacheWarm", sample("CacheWarm"))
    assert default_codec(registry_config.streams).decode(plain).name == "CacheWarm"


def test_confluent_decode_errors(registry_config):
    codec = default_codec(registry_config.streams)
    data = codec.encode("CacheWarm", sample("CacheWarm"))
    with pytest.raises(DecodeError) as exc:
        codec.decode(data[:3])
    assert exc.value.reason == "truncated"
    with pytest.raises(DecodeError) as exc:
        codec.decode(b"\x00\x00\x01\x86\xa0" + data[5:])     # schema id 100000: never registered
    assert exc.value.reason == "unknown_schema_id"
    with pytest.raises(DecodeError) as exc:
        codec.decode(data[:-3])
    assert exc.value.reason == "truncated"
