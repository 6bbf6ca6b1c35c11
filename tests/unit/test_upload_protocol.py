"""The resumable upload protocol's pure helpers: headers, metadata, chunk rules, sessions."""
from __future__ import annotations

import base64

import pytest

from framelog.api.upload_protocol import (
    MAX_PARTS,
    MIB,
    MIN_PART_SIZE,
    ProtocolError,
    UploadSession,
    check_chunk_size,
    check_offset_content_type,
    clean_content_type,
    clean_filename,
    clean_owner,
    encode_upload_metadata,
    offset_of_parts,
    parse_upload_length,
    parse_upload_metadata,
    parse_upload_offset,
    plan_chunk,
)


def status_of(fn, *args, **kw) -> int:
    with pytest.raises(ProtocolError) as info:
        fn(*args, **kw)
    return info.value.status


# ------------------------------------------------------------------ Upload-Length / Upload-Offset

def test_upload_length_within_limit():
    assert parse_upload_length("20971520", 10 * 2**30) == 20 * MIB
    assert parse_upload_length(" 1 ", 10) == 1
    assert parse_upload_length("10", 10) == 10


@pytest.mark.parametrize("value", [None, "", "abc", "-1", "1.5", "+3", "1e6", "0x10", "1 2", "9" * 21])
def test_upload_length_malformed_is_400(value):
    assert status_of(parse_upload_length, value, 10 * 2**30) == 400


def test_upload_length_zero_is_400_and_too_large_is_413():
    assert status_of(parse_upload_length, "0", 100) == 400
    assert status_of(parse_upload_length, "101", 100) == 413


def test_upload_offset():
    assert parse_upload_offset("0") == 0
    assert parse_upload_offset("8388608") == 8 * MIB
    for bad in (None, "", "-5", "x", "5 MiB"):
        assert status_of(parse_upload_offset, bad) == 400


# ------------------------------------------------------------------ Upload-Metadata

def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_metadata_parses_tus_pairs():
    header = f"filename {b64('clip ü.mp4')}, owner {b64('alice')},is_confidential"
    assert parse_upload_metadata(header) == {"filename": "clip ü.mp4", "owner": "alice", "is_confidential": ""}
    assert parse_upload_metadata(None) == {}
    assert parse_upload_metadata("  ") == {}


@pytest.mark.parametrize("header", ["filename not-base64!", "a b c", "bad/key dGVzdA==", f"x {b64('1')},x {b64('2')}",
                                    "k " + base64.b64encode(b"\xff\xfe").decode()])
def test_metadata_malformed_is_400(header):
    assert status_of(parse_upload_metadata, header) == 400


def test_metadata_round_trip():
    meta = {"filename": "a b,c.mp4", "owner": "bob", "flag": ""}
    assert parse_upload_metadata(encode_upload_metadata(meta)) == meta
    with pytest.raises(ValueError):
        encode_upload_metadata({"bad key": "x"})


# ------------------------------------------------------------------ content types, names, owners

def test_offset_content_type():
    check_offset_content_type("application/offset+octet-stream")
    check_offset_content_type("Application/Offset+Octet-Stream; charset=binary")
    for bad in (None, "", "application/octet-stream", "text/plain"):
        assert status_of(check_offset_content_type, bad) == 415


def test_clean_filename_keeps_the_last_component_only():
    assert clean_filename("../../etc/passwd") == "passwd"
    assert clean_filename("C:\\videos\\clip.mov") == "clip.mov"
    assert clean_filename("a\x00b\nc.mp4") == "abc.mp4"
    assert clean_filename(None) == ""
    assert len(clean_filename("x" * 500)) == 200


def test_clean_content_type():
    assert clean_content_type("Video/MP4; codecs=avc1") == "video/mp4"
    assert clean_content_type(None, "clip.mp4") == "video/mp4"
    assert clean_content_type(None, "noext") == "application/octet-stream"
    assert status_of(clean_content_type, "not a type") == 400
    assert status_of(clean_content_type, "video/mp4\r\nX: y") == 400


def test_clean_owner():
    assert clean_owner(None) == "local-user"
    assert clean_owner("alice@example.com") == "alice@example.com"
    assert status_of(clean_owner, "alice smith") == 400
    assert status_of(clean_owner, "x" * 129) == 400


# ------------------------------------------------------------------ chunk rules

def test_non_final_chunk_under_5_mib_is_400():
    length = 20 * MIB
    assert status_of(check_chunk_size, MIN_PART_SIZE - 1, length) == 400
    check_chunk_size(MIN_PART_SIZE, length)                      # exactly the minimum
    check_chunk_size(3, 3)                                       # a small final chunk is fine
    check_chunk_size(0, length)                                  # an empty PATCH changes nothing


def test_plan_chunk_uses_content_length_up_front():
    plan = plan_chunk(8 * MIB, 20 * MIB, 1, 8 * MIB)
    assert plan.remaining == 12 * MIB and plan.max_bytes == 12 * MIB
    assert plan_chunk(16 * MIB, 20 * MIB, 2, 4 * MIB).remaining == 4 * MIB       # the final chunk
    assert status_of(plan_chunk, 16 * MIB, 20 * MIB, 2, 5 * MIB) == 413           # overruns the length
    assert status_of(plan_chunk, 0, 20 * MIB, 0, 1 * MIB) == 400                  # too small, not final
    assert status_of(plan_chunk, 21 * MIB, 20 * MIB, 0, None) == 409              # beyond the end
    assert status_of(plan_chunk, 0, 2**40, 0, 512 * MIB, 256 * MIB) == 413        # over the chunk maximum
    assert status_of(plan_chunk, 0, 2**40, MAX_PARTS, None) == 400                # out of part numbers
    assert plan_chunk(0, 2**40, 0, None, 256 * MIB).max_bytes == 256 * MIB


def test_offset_of_parts():
    assert offset_of_parts([]) == 0
    assert offset_of_parts([{"PartNumber": 2, "Size": 3}, {"PartNumber": 1, "Size": 8 * MIB}]) == 8 * MIB + 3
    with pytest.raises(ValueError):
        offset_of_parts([{"PartNumber": 1, "Size": 1}, {"PartNumber": 3, "Size": 1}])


# ------------------------------------------------------------------ the session object

def test_session_round_trip_and_rejects_garbage():
    s = UploadSession(video_id="v1", object_key="uploads/v1/original", upload_id="u", length=10, filename="a.mp4",
                      content_type="video/mp4", owner="o", created="2026-01-01T00:00:00+00:00",
                      event_id="6f1c4c1e-0000-4000-8000-000000000000")
    assert UploadSession.from_json(s.to_json()) == s
    for bad in (b"[]", b'{"version": 99}', s.to_json().replace(b'"length": 10', b'"length": 0')):
        with pytest.raises((ValueError, TypeError)):
            UploadSession.from_json(bad)
