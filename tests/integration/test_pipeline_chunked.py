"""Chunked transcoding on the real stack (issue 13 pts 2, 3, 5): chunk jobs on their own topic and consumer
group, the stitch's table, one continuous VOD per rung, a chunk worker killed with kill -9 mid-chunk, a video
deleted mid-flight. The stack's overlay must make a 30-40 s clip several chunks (chunk_seconds 10s)."""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from framelog.pipeline.jobs import tombstones
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import write_local_playlist
from framelog.sinks.uploads import upload_file
from framelog.stack.process import wait_until
from framelog.streams import topics
from tests.integration.support.pipeline import PIPELINE_TIMEOUT, finished, process_clip, read_topic
from tests.media.support import clips

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _chunked(config):
    if not config.media.transcoding.chunked or config.media.transcoding.chunk_seconds > 10:
        pytest.skip("needs media.transcoding.chunked with chunk_seconds 10s (the test stack's overlay)")


def _chunk_events(config, video_id: str) -> list[dict]:
    return [r for name, r in read_topic(config, topics.CHUNK_TRANSITIONS, video_id) if name == "ChunkTransition"]


def _states(events: list[dict], state: str) -> list[int]:
    return sorted(e["chunk_index"] for e in events if e["state"] == state)


def test_a_video_is_cut_into_chunk_jobs_and_stitched_into_one_continuous_vod(config, worker, status, store,
                                                                                tmp_path):
    src = clips.video(tmp_path / "three.mp4", width=320, height=180, duration=25)
    video_id, view = process_clip(config, status, src)
    assert view["state"] == "ready", view
    events = _chunk_events(config, video_id)
    jobs = events[0]["job_count"]
    assert events[0]["chunk_count"] == 3 and jobs == 4                      # 0-10, 10-20, 20-25 and the audio
    assert _states(events, "succeeded") == list(range(jobs)) and _states(events, "started") == list(range(jobs))
    assert view["stages"]["transcoding"]["outputs"]["chunk_count"] == "3"
    master = store.get_bytes(f"hls/{video_id}/master.m3u8").decode()
    key = store.get_bytes(f"keys/{video_id}/aes128.key")
    (tmp_path / "key").write_bytes(key)
    for name in re.findall(r"#EXT-X-STREAM-INF:.*\n(.*)/playlist.m3u8", master):
        text = store.get_bytes(f"hls/{video_id}/{name}/playlist.m3u8").decode()
        assert "#EXT-X-DISCONTINUITY" not in text and "#EXT-X-PLAYLIST-TYPE:VOD" in text and "#EXT-X-ENDLIST" in text
        assert text.count("#EXT-X-KEY") == 1 and text.count("#EXTINF") == 3
        local = tmp_path / name
        store.download_prefix(f"hls/{video_id}/{name}/", local)
        playlist = write_local_playlist(local / "playlist.m3u8", tmp_path / "key", tmp_path / f"{name}.m3u8")
        data = fc.run_json([fc.FFPROBE, "-v", "error", *fc.hls_input_options(), "-count_frames", "-select_streams",
                            "v:0", "-show_entries", "stream=nb_read_frames", "-of", "json", str(playlist)])
        assert int(data["streams"][0]["nb_read_frames"]) == 25 * 25           # the source's frames
    assert len(read_topic(config, topics.ASSETS, video_id)) == 1


def _pids(config, group: str) -> list[int]:
    marker = f"--state-dir {config.stack.state_dir} worker --stage {group}"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _descendants(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return kids + [d for k in kids for d in _descendants(k)]


def test_a_chunk_worker_killed_mid_chunk_redoes_that_chunk_only_and_the_video_publishes_once(
        config, worker, status, tmp_path):
    src = clips.video(tmp_path / "kill.mp4", width=640, height=360, duration=40)
    video_id = upload_file(config, src, owner_id="tests").video_id
    deadline = time.monotonic() + 300
    victim = None
    while time.monotonic() < deadline and victim is None:
        events = _chunk_events(config, video_id)
        running = set(_states(events, "started")) - set(_states(events, "succeeded"))
        if running and events[0]["job_count"] - 1 not in running:        # a video chunk, not the quick audio job
            victim = sorted(running)[0]
        else:
            time.sleep(0.5)
    assert victim is not None, "no chunk started"
    pids = _pids(config, "chunks")
    assert pids, "no chunk worker process"
    doomed = pids + [d for p in pids for d in _descendants(p)]           # the worker and its ffmpeg: a crash
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert wait_until(lambda: all(not Path(f"/proc/{p}").exists() or
                                  Path(f"/proc/{p}/stat").read_text().split()[2] == "Z" for p in doomed), 10)
    view = status.wait_for(video_id, finished, PIPELINE_TIMEOUT)
    assert view["state"] == "ready", view
    events = _chunk_events(config, video_id)
    jobs = events[0]["job_count"]
    started = _states(events, "started")
    assert len(started) == jobs + 1, started                            # encodes = jobs + 1: one redone
    assert started.count(victim) == 2 and set(started) == set(range(jobs))
    assert len(read_topic(config, topics.ASSETS, video_id)) == 1         # published once


def test_deleting_a_video_mid_flight_cancels_its_queued_chunks(config, worker, status, store, tmp_path):
    src = clips.video(tmp_path / "gone.mp4", width=640, height=360, duration=40)
    video_id = upload_file(config, src, owner_id="tests").video_id
    assert wait_until(lambda: _states(_chunk_events(config, video_id), "started"), 300)
    tombstones.mark_deleted(store, video_id, "test")                      # what DELETE /videos/{id} writes first
    view = status.wait_for(video_id, lambda v: v is not None and
                           (v["stages"].get("transcoding") or {}).get("state") == "cancelled", PIPELINE_TIMEOUT)
    assert view["stages"]["transcoding"]["state"] == "cancelled", view
    events = _chunk_events(config, video_id)
    assert _states(events, "cancelled"), events
    assert not read_topic(config, topics.ASSETS, video_id)


def test_playable_while_processing_with_a_growing_event_playlist_then_the_vod(config, worker, status, store,
                                                                               tmp_path):
    """As soon as the audio and chunk 0 are in, GET /v1/stream answers 200 (``processing``) with the lowest
    rung, whose playlist on the edge is EVENT without EXT-X-ENDLIST; once published, the VOD with it."""
    import dataclasses

    from fastapi.testclient import TestClient

    from tests.integration.support.delivery_api import make_app, viewer_tokens
    from tests.integration.support.edges import fetch

    if not config.media.transcoding.playable_while_processing:
        pytest.skip("media.transcoding.playable_while_processing is off")
    trusting = dataclasses.replace(config, playback_trust=dataclasses.replace(config.playback_trust,
                                                                              trusted_proxies=("10.20.0.0/16",)))
    data = clips.video(tmp_path / "grow.mp4", width=640, height=360, duration=40).read_bytes()
    with TestClient(make_app(trusting), client=("10.20.0.1", 50000)) as client:
        alice = viewer_tokens(config)["alice"]
        r = client.post("/videos", params={"visibility": "public"},
                        headers={"Upload-Length": str(len(data)), "Tus-Resumable": "1.0.0", **alice})
        assert r.status_code == 201, r.text
        video_id = r.json()["video_id"]
        r = client.patch(f"/videos/{video_id}/upload", content=data,
                         headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0",
                                  "Tus-Resumable": "1.0.0", **alice})
        assert r.status_code == 204, r.text
        deadline = time.monotonic() + PIPELINE_TIMEOUT
        early = None
        while time.monotonic() < deadline:
            r = client.get("/v1/stream", params={"video_id": video_id})
            if r.status_code == 200:
                early = r.json()
                break
            assert r.status_code == 409, r.text
            time.sleep(0.5)
        assert early is not None, "never playable"
        view = status.get(video_id)
        if early["processing"]:                           # caught while chunks were still coming
            assert view is None or view["state"] != "ready"
            (quality,) = early["qualities"]
            code, _, body = fetch(quality["playlist_url"])
            assert code == 200, body
            text = body.decode()
            assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text or "#EXT-X-ENDLIST" in text   # the last chunk may be in
            code, _, master = fetch(early["stream_url"])
            assert code == 200 and b"TYPE=AUDIO" in master
        view = status.wait_for(video_id, finished, PIPELINE_TIMEOUT)
        assert view["state"] == "ready", view
        assert early["processing"], "published before any chunk was playable: nothing was tested"
        assert wait_until(lambda: client.get("/v1/stream", params={"video_id": video_id}).status_code == 200 and
                          not client.get("/v1/stream", params={"video_id": video_id}).json()["processing"], 60)
        final = client.get("/v1/stream", params={"video_id": video_id}).json()
        for q in final["qualities"]:
            code, _, body = fetch(q["playlist_url"])
            assert code == 200 and b"#EXT-X-ENDLIST" in body and b"#EXT-X-PLAYLIST-TYPE:VOD" in body, body[:300]
        code, _, master = fetch(final["stream_url"])
        assert master.count(b"#EXT-X-STREAM-INF") == len(final["qualities"])   # the purged preview master is gone
