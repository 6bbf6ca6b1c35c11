"""The resumable upload protocol's pure helpers: headers, metadata, chunk rules, sessions."""
from __future__ import annotations

import base64
import hashlib

import pytest

from framelog.api.upload_protocol import (
    MIB,
    ProtocolError,
    check_offset_content_type,
    check_tus_resumable,
    clean_content_type,
    clean_filename,
    clean_owner,
    encode_upload_metadata,
    parse_upload_checksum,
    parse_upload_length,
    parse_upload_metadata,
    parse_upload_offset,
)
from framelog.sinks.upload_sessions import MAX_PARTS, MIN_PART_SIZE, UploadSession, offset_of_parts, part_size_for


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


# ------------------------------------------------------------------ versions, checksums, parts

def test_tus_resumable_is_required_and_only_1_0_0():
    check_tus_resumable("1.0.0")
    for bad in (None, "", "0.2.2", "1.0.0,0.2.2"):
        assert status_of(check_tus_resumable, bad) == 412


def test_upload_checksum():
    assert parse_upload_checksum(None) is None
    digest = hashlib.sha1(b"abc").digest()
    c = parse_upload_checksum(f"sha1 {base64.b64encode(digest).decode()}")
    assert c is not None and c.algorithm == "sha1" and c.digest == digest
    assert c.hasher().name == "sha1"
    assert status_of(parse_upload_checksum, "crc32 AAAA") == 400                 # unsupported algorithm
    assert status_of(parse_upload_checksum, "sha1 !!") == 400                    # not base64
    assert status_of(parse_upload_checksum, "sha1 AAAA") == 400                  # wrong digest length
    assert status_of(parse_upload_checksum, "sha1") == 400


def test_part_size_keeps_within_the_part_count():
    assert part_size_for(100, 8 * MIB) == 8 * MIB
    assert part_size_for(100, 1) == MIN_PART_SIZE
    big = part_size_for(200 * 2**30, 8 * MIB)                     # 200 GiB: parts grow to fit 10,000
    assert big % MIB == 0 and big * MAX_PARTS >= 200 * 2**30


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
