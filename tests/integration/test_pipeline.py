"""The six-stage pipeline end to end: real worker processes, Kafka, S3 and ffmpeg.

A clip is uploaded (object in S3 + UploadCompleted), the worker supervisor's
agents run every stage, and the published HLS is checked the way a player
would need it. Failures are real too: a corrupt upload, an object that is not
there yet (a transient error that heals), a worker killed with kill -9.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
from pathlib import Path

import pytest

from framelog.core import object_keys
from framelog.core.ids import new_video_id
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import write_local_playlist
from framelog.sinks.uploads import announce_upload
from framelog.stack.process import wait_until
from framelog.streams import topics
from tests.integration.support.pipeline import PIPELINE_TIMEOUT, finished, process_clip, read_topic, upload
from tests.media.support import clips

pytestmark = pytest.mark.integration

def _is_mpegts(data: bytes) -> bool:
    return len(data) >= 188 * 3 and all(data[i] == 0x47 for i in range(0, 188 * 3, 188))


def test_landscape_clip_is_published_as_encrypted_adaptive_hls(config, worker, status, store, tmp_path):
    video_id, view = process_clip(config, status, clips.video(tmp_path / "in.mp4", width=1280, height=720, duration=14))
    assert view["state"] == "ready", view
    assert all(s["state"] == "succeeded" for s in view["stages"].values())

    master = store.get_bytes(object_keys.master_playlist(video_id)).decode()
    assert master.startswith("#EXTM3U\n#EXT-X-VERSION:6")
    infs = re.findall(r"#EXT-X-STREAM-INF:(.*)\n(.*)/playlist.m3u8", master)
    assert infs, master
    heights = []
    for attrs, _name in infs:
        for key in ("BANDWIDTH=", "AVERAGE-BANDWIDTH=", "RESOLUTION=", "FRAME-RATE=", 'CODECS="avc1.'):
            assert key in attrs, (key, attrs)
        assert "mp4a.40.2" in attrs
        heights.append(int(re.search(r"RESOLUTION=\d+x(\d+)", attrs).group(1)))
    assert max(heights) <= 720                                   # never above the source

    key = store.get_bytes(object_keys.hls_key(video_id))
    assert key is not None and len(key) == 16
    for _attrs, name in infs:
        playlist = store.get_bytes(object_keys.rendition_playlist(video_id, name)).decode()
        assert "#EXT-X-KEY:METHOD=AES-128" in playlist and f"/v1/keys/{video_id}" in playlist
        durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", playlist)]
        assert durations and max(durations) <= config.hls.segment_duration + 0.1
        local = tmp_path / name
        store.download_prefix(object_keys.rendition_prefix(video_id, name), local)
        (tmp_path / "key").write_bytes(key)
        segment = sorted(local.glob("*.ts"))[0].read_bytes()
        assert not _is_mpegts(segment)                            # without the key it is not a transport stream
        fc.run_ffmpeg(fc.decode_hls_args(write_local_playlist(local / "playlist.m3u8", tmp_path / "key",
                                                              tmp_path / f"{name}.m3u8")))
    if config.media.transcoding.chunked:     # the audio, encoded once, is its own rendition every variant names
        audio = re.search(r'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="(\w+)".*URI="(.*)"', master)
        assert audio and all(f'AUDIO="{audio.group(1)}"' in attrs for attrs, _ in infs), master
        local = tmp_path / "audio"
        store.download_prefix(f"hls/{video_id}/audio/", local)
        fc.run_ffmpeg(fc.decode_hls_args(write_local_playlist(local / "playlist.m3u8", tmp_path / "key",
                                                              tmp_path / "audio.m3u8")))
    head = store.head(object_keys.master_playlist(video_id))
    assert head["ContentType"] == "application/vnd.apple.mpegurl" and "max-age" in head["CacheControl"]
    seg_head = store.head(next(store.keys(object_keys.hls_file(video_id, infs[0][1], "segment_"))))
    assert "s-maxage=86400" in seg_head["CacheControl"]
    assert store.head(object_keys.thumbnail(video_id, "poster.jpg")) is not None
    assert store.head(object_keys.thumbnail(video_id, "storyboard.vtt")) is not None

    published = read_topic(config, topics.ASSETS, video_id)
    assert [name for name, _ in published] == ["AssetPublished"]
    assert {r["name"] for r in published[0][1]["renditions"]} == {name for _, name in infs}
    warm = [v for name, v in read_topic(config, topics.CDN_COMMANDS, video_id) if name == "CacheWarm"]
    assert len(warm) == 1 and f"/hls/{video_id}/master.m3u8" in warm[0]["paths"]


def test_portrait_phone_clip_with_rotation_metadata(config, worker, status, store, tmp_path):
    video_id, view = process_clip(config, status, clips.portrait_rotated(tmp_path / "p.mp4"))
    assert view["state"] == "ready", view
    master = store.get_bytes(object_keys.master_playlist(video_id)).decode()
    sizes = re.findall(r"RESOLUTION=(\d+)x(\d+)", master)
    assert sizes and all(int(w) < int(h) for w, h in sizes)     # displayed upright, as the phone shot it


@pytest.mark.parametrize("make, name, reason", [
    (clips.truncated, "t.mp4", "truncated"),
    (clips.zero_bytes, "e.mp4", "empty_file"),
    (clips.text_file, "x.mp4", "not_media"),
    (clips.audio_only, "a.m4a", "audio_only"),
    (clips.png_still, "s.png", "still_image"),
])
def test_broken_upload_fails_validation_with_reason_and_dead_letter(config, worker, status, tmp_path, make, name,
                                                                   reason):
    path = make(tmp_path / name)
    video_id, view = process_clip(config, status, path)
    assert view["state"] == "failed"
    stage = view["stages"]["validation"]
    assert stage["state"] == "failed" and stage["error_type"] == reason, stage
    assert stage["attempt"] == 1                                  # a permanent error is not retried
    dead = read_topic(config, topics.dead_letter_topic(topics.pipeline_topic("validation")), video_id)
    assert len(dead) == 1 and dead[0][1]["reason"] == f"stage_failed:{reason}"
    assert "transcoding" not in view["stages"] or view["stages"]["transcoding"]["state"] == "queued"


def test_transient_failure_is_retried_then_succeeds(config, worker, status, store, tmp_path):
    """The upload event arrives before its object exists: validation retries with backoff, then succeeds."""
    src = clips.video(tmp_path / "late.mp4", width=320, height=180, duration=4, audio=False)
    data = src.read_bytes()
    video_id = new_video_id()
    key = object_keys.raw_upload(video_id)
    announce_upload(config.streams, config.priorities, video_id=video_id, object_key=key, size_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), content_type="video/mp4", owner_id="tests")
    view = status.wait_for(video_id, lambda v: v is not None and
                           (v["stages"].get("validation") or {}).get("state") == "retrying", 120)
    assert view["stages"]["validation"]["state"] == "retrying", view
    store.put_bytes(key, data, "video/mp4")
    view = status.wait_for(video_id, finished, PIPELINE_TIMEOUT)
    assert view["state"] == "ready", view
    assert view["stages"]["validation"]["attempt"] >= 2
    assert "mp4a" not in store.get_bytes(object_keys.master_playlist(video_id)).decode()   # a source without audio


def _stage_pids(config, stage: str) -> list[int]:
    marker = f"--state-dir {config.stack.state_dir} worker --stage {stage}"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd:
                pids.append(int(entry.name))
    return pids


def test_worker_killed_mid_transcode_is_replaced_and_the_job_completes_once(config, worker, status, tmp_path):
    src = clips.video(tmp_path / "long.mp4", width=1280, height=720, duration=40)
    video_id = upload(config, src)
    view = status.wait_for(video_id, lambda v: v is not None and
                           (v["stages"].get("transcoding") or {}).get("state") in ("started", "progress"), 240)
    assert (view["stages"].get("transcoding") or {}).get("state") in ("started", "progress"), view
    pids = _stage_pids(config, "transcoding")
    assert pids, "no transcoding worker process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: all(not Path(f"/proc/{p}").exists() or
                                  Path(f"/proc/{p}/stat").read_text().split()[2] == "Z" for p in pids), 10)
    view = status.wait_for(video_id, finished, PIPELINE_TIMEOUT)
    assert view["state"] == "ready", view
    published = read_topic(config, topics.ASSETS, video_id)
    assert len(published) == 1                                    # no second visible result
