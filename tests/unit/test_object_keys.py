"""The object-key layout (core/object_keys.py): every key framelog writes, built from validated parts only."""
from datetime import UTC, datetime

import pytest

from framelog.core import object_keys as ok
from framelog.core.errors import InvalidIdError

WHEN = datetime(2025, 3, 9, tzinfo=UTC)


def test_the_layout():
    assert ok.raw_upload("abc") == "uploads/abc/original"
    assert ok.upload_session("abc") == "uploads/abc/_session.json"
    assert ok.upload_receipt("abc") == "uploads/abc/_receipt.json"
    assert ok.upload_partial("abc", 3) == "uploads/abc/_partial/00003"
    assert ok.upload_partial("abc", 3).startswith(ok.upload_partials("abc"))
    assert ok.staging_root("abc") == "work/abc/"
    assert ok.job_staging("abc", "j-1", "transcoding", 2) == "work/abc/j-1/transcoding/attempt-2"
    assert ok.job_marker("abc", "j-1", "transcoding") == "work/abc/j-1/transcoding/_SUCCESS.json"
    assert ok.is_marker(ok.job_marker("abc", "j-1", "cdn_upload"))
    assert ok.staged("work/abc/j/s/attempt-0", "hls/720p/s_1.ts") == "work/abc/j/s/attempt-0/hls/720p/s_1.ts"
    assert ok.master_playlist("abc") == "hls/abc/master.m3u8"
    assert ok.rendition_prefix("abc", "720p") == "hls/abc/720p/"
    assert ok.rendition_playlist("abc", "1080p") == "hls/abc/1080p/playlist.m3u8"
    assert ok.hls_file("abc", "720p", "segment_00001.ts") == "hls/abc/720p/segment_00001.ts"
    assert ok.hls_object("abc", "720p/playlist.m3u8") == "hls/abc/720p/playlist.m3u8"
    assert ok.subtitles_object("abc", "en/playlist.m3u8") == "hls/abc/subtitles/en/playlist.m3u8"
    assert ok.captions_vtt("abc") == "hls/abc/subtitles/captions.vtt"
    assert ok.thumbnail("abc", "poster.jpg") == "thumbnails/abc/poster.jpg"
    assert ok.thumbnail("abc", "sprites/storyboard.vtt") == "thumbnails/abc/sprites/storyboard.vtt"
    assert ok.chapters_vtt("abc") == "thumbnails/abc/chapters.vtt"
    assert ok.hls_key("abc") == "keys/abc/aes128.key"
    assert ok.analysis_report("abc") == "meta/abc/analysis.json"
    assert ok.progressive_mp4("abc", "1080p", WHEN) == "videos/2025/03/1080p/abc.mp4"
    assert ok.tombstone("abc") == "deleted/abc"
    assert all(k.startswith(ok.upload_root("abc")) for k in (ok.raw_upload("abc"), ok.upload_session("abc")))
    assert ok.video_prefixes("abc") == ("uploads/abc/", "work/abc/", "hls/abc/", "thumbnails/abc/", "keys/abc/",
                                        "meta/abc/")
    assert ok.edge_path("hls/abc/master.m3u8") == "/hls/abc/master.m3u8"


def test_nothing_a_viewer_fetches_sits_where_no_edge_serves_and_the_reverse():
    served = (ok.master_playlist("v"), ok.hls_file("v", "720p", "s.ts"), ok.thumbnail("v", "poster.jpg"),
              ok.captions_vtt("v"), ok.chapters_vtt("v"))
    assert all(k.split("/")[0] in ok.EDGE_PREFIXES for k in served)
    private = (ok.raw_upload("v"), ok.upload_session("v"), ok.staging_root("v"), ok.hls_key("v"),
               ok.analysis_report("v"), ok.tombstone("v"))
    assert not any(k.split("/")[0] in ok.EDGE_PREFIXES for k in private)
    assert ok.tombstone("v").split("/")[0] not in ok.VIDEO_PREFIXES       # a delete never removes its tombstone


@pytest.mark.parametrize("build", [ok.raw_upload, ok.upload_session, ok.staging_root, ok.master_playlist,
                                   ok.hls_key, ok.tombstone, ok.video_prefixes, ok.thumbnails_root,
                                   lambda v: ok.progressive_mp4(v, "720p", WHEN),
                                   lambda v: ok.job_staging(v, "j", "s", 0)])
@pytest.mark.parametrize("bad_id", ["../etc", "a/b", "", "x" * 65, None, "abc\n", "a.b"])
def test_video_ids_are_validated(build, bad_id):
    with pytest.raises(InvalidIdError):
        build(bad_id)


@pytest.mark.parametrize("bad", ["../x", "a/../b", "", "a//b", "/abs", ".hidden", "a b", "a/", None])
def test_file_names_cannot_escape(bad):
    with pytest.raises(ValueError):
        ok.thumbnail("abc", bad)
    with pytest.raises(ValueError):
        ok.hls_object("abc", bad)


@pytest.mark.parametrize("bad_quality", ["../x", "", "a/b", "x" * 33, ".."])
def test_rendition_and_quality_names_are_validated(bad_quality):
    with pytest.raises(ValueError):
        ok.rendition_playlist("abc", bad_quality)
    with pytest.raises(ValueError):
        ok.progressive_mp4("abc", bad_quality, WHEN)


@pytest.mark.parametrize("job, stage, attempt", [("../j", "s", 0), ("j", "a/b", 0), ("j", "s", -1), ("j", "s", "1")])
def test_staging_parts_are_validated(job, stage, attempt):
    with pytest.raises(ValueError):
        ok.job_staging("abc", job, stage, attempt)


@pytest.mark.parametrize("part", [0, -1, 100_000, "2", True])
def test_partial_part_numbers_are_validated(part):
    with pytest.raises(ValueError):
        ok.upload_partial("abc", part)


def test_the_mp4_shape():
    key = ok.progressive_mp4("v1", "720p", WHEN)
    assert ok.is_progressive_mp4(key) and ok.is_progressive_mp4(key, "v1")
    assert not ok.is_progressive_mp4(key, "v2")
    for bad in ("videos/2025/03/09/720p/v1.mp4", "videos/../keys/v1.mp4", "hls/v1/v1.mp4", None):
        assert not ok.is_progressive_mp4(bad)
