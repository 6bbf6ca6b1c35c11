"""Chunked transcoding on the real stack (issue 13 pts 2, 3, 5): chunk jobs on their own topic and consumer
group, the stitch's table, one continuous VOD per rung, a chunk worker killed with kill -9 mid-chunk, a video
deleted mid-flight. The stack's overlay must make a 30-40 s clip several chunks (chunk_seconds 10s)."""
from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from framelog.pipeline.jobs import tombstones
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import write_local_playlist
from framelog.stack.process import wait_until
from framelog.streams import topics
from tests.integration.support.pipeline import PIPELINE_TIMEOUT, finished, process_clip, read_topic, upload
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
    video_id = upload(config, src)
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
    video_id = upload(config, src)
    assert wait_until(lambda: _states(_chunk_events(config, video_id), "started"), 300)
    tombstones.mark_deleted(store, video_id, "test")                      # what DELETE /videos/{id} writes first
    view = status.wait_for(video_id, lambda v: v is not None and
                           (v["stages"].get("transcoding") or {}).get("state") == "cancelled", PIPELINE_TIMEOUT)
    assert view["stages"]["transcoding"]["state"] == "cancelled", view
    events = _chunk_events(config, video_id)
    assert _states(events, "cancelled"), events
    assert not read_topic(config, topics.ASSETS, video_id)


STREAM_INF = re.compile(r"#EXT-X-STREAM-INF:(.*)\n(.*)")


def _variants(master: str) -> list[dict[str, str]]:
    """The master's variants: their attributes (BANDWIDTH, RESOLUTION, CODECS, AUDIO, ...) and ``uri``."""
    found = []
    for attrs, uri in STREAM_INF.findall(master):
        fields = dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', attrs))
        found.append({k: v.strip('"') for k, v in fields.items()} | {"uri": uri.strip()})
    return found


def _decode_first_segment(playlist_url: str, key: bytes, where: Path) -> tuple[str, int]:
    """The rung's playlist and its first segment fetched through the edge, the segment decrypted with the key
    and decoded by ffprobe; returns the playlist's text and the segment's video frames."""
    from tests.integration.support.edges import fetch

    code, _, body = fetch(playlist_url)
    assert code == 200, body[:300]
    text = body.decode()
    key_line = next(line for line in text.splitlines() if line.startswith("#EXT-X-KEY"))
    first = next(line for line in text.splitlines() if line and not line.startswith("#"))
    code, _, segment = fetch(urljoin(playlist_url, first))
    assert code == 200, segment[:300]
    where.mkdir(parents=True, exist_ok=True)
    (where / "key").write_bytes(key)
    (where / "segment.ts").write_bytes(segment)
    local_key = re.sub(r'URI="[^"]*"', f'URI="{(where / "key").resolve()}"', key_line)
    (where / "one.m3u8").write_text("\n".join(["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:10", local_key,
                                                "#EXTINF:10.0,", str((where / "segment.ts").resolve()),
                                                "#EXT-X-ENDLIST"]) + "\n")
    data = fc.run_json([fc.FFPROBE, "-v", "error", *fc.hls_input_options(), "-count_frames", "-select_streams", "v:0",
                        "-show_entries", "stream=nb_read_frames,width,height", "-of", "json", str(where / "one.m3u8")])
    stream = data["streams"][0]
    return text, int(stream["nb_read_frames"]) if stream.get("width") else 0


def test_playable_while_processing_with_a_growing_event_playlist_per_rung_then_the_vod(config, worker, status, store,
                                                                                         tmp_path):
    """As soon as the audio and chunk 0 are in, GET /v1/stream answers 200 (``processing``); while chunks are
    still coming the master on the edge lists every rung with its first chunk there (here both of a 480p
    source's: 360p and 480p, lowest first, measured BANDWIDTH, RESOLUTION, CODECS, the audio group), each
    rung's own playlist on the edge is EVENT without EXT-X-ENDLIST and its first segment decrypts and decodes;
    once published, the VOD master with every rung, each VOD with EXT-X-ENDLIST."""
    import dataclasses

    from fastapi.testclient import TestClient

    from tests.integration.support.delivery_api import make_app, viewer_tokens
    from tests.integration.support.edges import fetch

    if not config.media.transcoding.playable_while_processing:
        pytest.skip("media.transcoding.playable_while_processing is off")
    trusting = dataclasses.replace(config, playback_trust=dataclasses.replace(config.playback_trust,
                                                                              trusted_proxies=("10.20.0.0/16",)))
    data = clips.video(tmp_path / "grow.mp4", width=854, height=480, duration=60).read_bytes()   # 6 chunks
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
        uploaded = time.monotonic()
        deadline = uploaded + PIPELINE_TIMEOUT
        first = early = None                                             # first playable, then with 2+ rungs
        while time.monotonic() < deadline:
            r = client.get("/v1/stream", params={"video_id": video_id})
            assert r.status_code in (200, 409), r.text
            if r.status_code == 200:
                answer = r.json()
                if first is None:
                    first = (time.monotonic() - uploaded, len(answer["qualities"]))
                if not answer["processing"] or len(answer["qualities"]) >= 2:
                    early = answer
                    break
            time.sleep(0.5)
        assert early is not None, "never playable"
        assert early["processing"], "published before two rungs were playable while processing: nothing tested"
        two_rungs = time.monotonic() - uploaded
        view = status.get(video_id)
        assert view is None or view["state"] != "ready"
        names = [q["name"] for q in early["qualities"]]
        assert names == ["360p", "480p"], names                           # lowest first
        key = client.get(urlparse(early["encryption"]["key_uri"]).path + "?" + early["encryption"]["grant"],
                         headers=alice)
        assert key.status_code == 200 and len(key.content) == 16, key.text
        growing = 0
        for q in early["qualities"]:
            text, frames = _decode_first_segment(q["playlist_url"], key.content, tmp_path / q["name"])
            assert frames == 10 * 25, (q["name"], frames)                  # one 10 s segment at 25 fps
            assert "#EXT-X-DISCONTINUITY" not in text
            growing += "#EXT-X-PLAYLIST-TYPE:EVENT" in text and "#EXT-X-ENDLIST" not in text
        assert growing, "no rung's playlist was still growing: the last chunk came in before the check"

        def master() -> str:
            code, _, body = fetch(early["stream_url"])
            assert code == 200, body[:300]
            return body.decode()

        assert wait_until(lambda: len(_variants(master())) >= 2, 30), master()   # a purged older master
        text = master()
        variants = _variants(text)
        assert [v["uri"] for v in variants] == [f"{n}/playlist.m3u8" for n in names]
        assert re.search(r'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="([^"]+)".*URI="audio/playlist.m3u8"', text), text
        for v, q in zip(variants, early["qualities"], strict=True):
            assert v["RESOLUTION"] == f"{q['width']}x{q['height']}"    # BANDWIDTH: measured on the chunks so far
            assert v["CODECS"] == q["codecs"] and v["CODECS"].startswith("avc1.") and "mp4a.40.2" in v["CODECS"]
            assert v["AUDIO"] and int(v["BANDWIDTH"]) >= int(v["AVERAGE-BANDWIDTH"]) > 0
        assert int(variants[0]["BANDWIDTH"]) < int(variants[1]["BANDWIDTH"])
        code, _, audio = fetch(urljoin(early["stream_url"], "audio/playlist.m3u8"))
        assert code == 200 and b"#EXT-X-ENDLIST" in audio                 # encoded once, whole, before chunk 0

        view = status.wait_for(video_id, finished, PIPELINE_TIMEOUT)
        assert view["state"] == "ready", view
        published = time.monotonic() - uploaded
        assert first is not None
        print(f"\nvideo {video_id} (60 s 854x480, 6 chunks of 10 s): first playable {first[0]:.1f}s after the upload "
              f"({first[1]} rung(s)), 2 rungs {two_rungs:.1f}s, published {published:.1f}s")
        assert wait_until(lambda: client.get("/v1/stream", params={"video_id": video_id}).status_code == 200 and
                          not client.get("/v1/stream", params={"video_id": video_id}).json()["processing"], 60)
        final = client.get("/v1/stream", params={"video_id": video_id}).json()
        kept = {q["name"] for q in final["qualities"]}
        assert kept and kept <= set(names), (kept, names)         # the per-title ladder may drop a rung
        for q in final["qualities"]:
            code, _, body = fetch(q["playlist_url"])
            assert code == 200 and b"#EXT-X-ENDLIST" in body and b"#EXT-X-PLAYLIST-TYPE:VOD" in body, body[:300]
            assert body.count(b"#EXTINF") == 6
        for q in early["qualities"]:              # a player that started on a dropped rung still plays to the end

            def ended(url: str = q["playlist_url"]) -> bool:
                code, _, body = fetch(url)
                return code == 200 and b"#EXT-X-ENDLIST" in body and body.count(b"#EXTINF") == 6

            assert wait_until(ended, 30), (q["name"], fetch(q["playlist_url"])[2][:300])
        assert wait_until(lambda: master().count("#EXT-X-STREAM-INF") == len(final["qualities"]), 30)


def _chunk_group_members(config) -> int:
    from framelog.ops.groups import describe_groups

    [report] = describe_groups(config.kafka, config.stack, ["framelog-chunks"], timeout=10)
    return len(report.members) if report.state == "STABLE" else 0


def test_a_second_chunk_worker_takes_half_of_a_videos_chunks(config, worker, status, tmp_path):
    """A second ``framelog worker --stage chunks`` joins the group; a video's 10 chunks and its audio are dealt by
    load: 5 chunks each, one worker also the audio, whichever partitions each was given (by index, Faust's sticky
    assignment of 0-2 and 3-5 of 6 partitions gives one worker 6 chunks and the other 4: what the benchmark saw)."""
    import subprocess
    import sys

    log = (tmp_path / "second-chunk-worker.log").open("wb")
    second = subprocess.Popen([sys.executable, "-m", "framelog.cli.main", "--state-dir", str(config.stack.state_dir),
                               "worker", "--stage", "chunks"], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        assert wait_until(lambda: second.poll() is None and _chunk_group_members(config) == 2, 120), \
            (tmp_path / "second-chunk-worker.log").read_text()[-2000:]
        src = clips.video(tmp_path / "hundred.mp4", width=320, height=180, duration=100)
        video_id, view = process_clip(config, status, src)
        assert view["state"] == "ready", view
        events = _chunk_events(config, video_id)
        audio = events[0]["job_count"] - 1
        started = [e for e in events if e["state"] == "started"]
        assert len(started) == 11, started
        chunks = Counter(e["worker"] for e in started if e["chunk_index"] != audio)
        assert sorted(chunks.values()) == [5, 5], chunks
    finally:
        os.killpg(second.pid, signal.SIGTERM)              # the worker and its children: a clean leave
        try:
            second.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
        log.close()
    assert wait_until(lambda: _chunk_group_members(config) == 1, 120)    # the stack's own worker, alone again
