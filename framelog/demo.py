"""`framelog demo`: the main job end to end on the local stack.

1. start the API (with the embedded analytics sink) and the pipeline worker;
2. generate a clip with ffmpeg and upload it through the resumable API;
3. follow its six stages from the stage-transition log until it is ready;
4. prove the published HLS is encrypted and plays: fetch the key with a
   playback grant, decode every rendition with ffmpeg;
5. play it: simulated viewers send playback and quality-switch events to the
   ingestion API;
6. query the analytics (the seed's get_video_analytics) from ClickHouse.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from framelog.analytics_client import AnalyticsClient
from framelog.config import Config
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import MASTER_NAME, PLAYLIST_NAME, write_local_playlist
from framelog.sinks.object_store import ObjectStore
from framelog.stack.services import ApiService, WorkerService
from framelog.upload_client import upload_resumable

PIPELINE_DEADLINE = 900.0
ANALYTICS_DEADLINE = 120.0
WORKER_START_TIMEOUT = 300.0
VIEWERS = (("viewer-us-1", "US"), ("viewer-us-2", "US"), ("viewer-de-1", "DE"), ("viewer-gb-1", "GB"))
DEMO_OWNER = "demo"               # uploads the clip; a private video, so the demo plays it as its owner


def say(text: str) -> None:
    print(text, flush=True)


def start_services(config: Config) -> str:
    api, worker = ApiService(config), WorkerService(config)
    launched = {api.name: api.launch(), worker.name: worker.launch()}
    say(f"api      {api.finish_start(launched['api'])}; {api.address}; log {api.log_path}")
    say(f"worker   {worker.finish_start(launched['worker'], WORKER_START_TIMEOUT)}; log {worker.log_path}")
    return api.address


def follow_pipeline(api_url: str, video_id: str) -> dict[str, Any]:
    """Print each stage change as the status table sees it; return the final status."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + PIPELINE_DEADLINE
    with httpx.Client(base_url=api_url, timeout=15) as http:
        while time.monotonic() < deadline:
            r = http.get(f"/videos/{video_id}")
            status = r.json() if r.status_code == 200 else {}
            for stage, info in (status.get("stages") or {}).items():
                line = f"{info.get('state')} (attempt {info.get('attempt')})"
                if seen.get(stage) != line and info.get("state") != "progress":
                    seen[stage] = line
                    extra = f" in {info['duration_ms'] / 1000:.1f}s" if info.get("duration_ms") else ""
                    err = f": {info.get('error_type')}: {info.get('error_message')}" if info.get("error_type") else ""
                    say(f"  {stage:<22} {line}{extra}{err}")
            if status.get("state") in ("ready", "failed"):
                return status
            time.sleep(1.0)          # polling interval of a condition with a deadline
    raise TimeoutError(f"video {video_id} not processed within {PIPELINE_DEADLINE:.0f}s")


def verify_playable(config: Config, api_url: str, video_id: str) -> list[str]:
    """Download the published HLS, fetch the key through the key endpoint, decode every rendition."""
    from framelog.processors.tokens import issue_viewer_token, load_or_create_secret

    store = ObjectStore(config)
    work = Path(tempfile.mkdtemp(prefix="framelog-demo-"))
    try:
        store.download_prefix(f"hls/{video_id}/", work / "hls")
        master = (work / "hls" / MASTER_NAME).read_text()
        renditions = [line.split("/")[0] for line in master.splitlines() if line.endswith(PLAYLIST_NAME)]
        owner = {"Authorization": "Bearer " + issue_viewer_token(DEMO_OWNER, config, now=time.time(),
                                                                 secret=load_or_create_secret(config))}
        anonymous = httpx.get(f"{api_url}/v1/stream", params={"video_id": video_id}, timeout=10)
        stream = httpx.get(f"{api_url}/v1/stream", params={"video_id": video_id}, headers=owner, timeout=10)
        stream.raise_for_status()
        say(f"  stream API: {anonymous.status_code} for an anonymous viewer of the private video, "
            f"{stream.status_code} for its owner: {stream.json()['manifest_url']}")
        grant = stream.json()["encryption"]["grant"]
        no_grant = httpx.get(f"{api_url}/v1/keys/{video_id}", timeout=10)
        key = httpx.get(f"{api_url}/v1/keys/{video_id}?{grant}", headers=owner, timeout=10)
        key.raise_for_status()
        say(f"  key endpoint: {no_grant.status_code} without a grant, {key.status_code} with the owner's "
            f"({len(key.content)}-byte AES-128 key)")
        (work / "key").write_bytes(key.content)
        for name in renditions:
            local = write_local_playlist(work / "hls" / name / PLAYLIST_NAME, work / "key", work / f"{name}.m3u8")
            fc.run_ffmpeg(fc.decode_hls_args(local))
            say(f"  {name:<6} decrypts and decodes end to end")
        return renditions
    finally:
        shutil.rmtree(work, ignore_errors=True)


def simulate_viewers(api_url: str, video_id: str, duration: float) -> int:
    """Each viewer: view start, heartbeats, a quality switch, a rebuffer, likes/shares, the end."""
    sessions = 0
    for i, (viewer, country) in enumerate(VIEWERS):
        client = AnalyticsClient(api_url, headers={"X-Viewer-Country": country})
        now = int(time.time() * 1000)
        session = f"demo-{video_id[:8]}-{i}"

        def track(t: str, at: float, **fields: Any) -> None:
            base = {"type": t, "video_id": video_id, "session_id": session, "viewer_id": viewer,
                    "client_time": now + int(at * 1000), "position_seconds": min(at, duration),
                    "watch_time_delta_seconds": 0.0, "rendition": "720p", "device": "web",
                    "duration_seconds": duration}
            base.update(fields)
            client.track(base)

        track("view_start", 0, startup_time_ms=350 + 100 * i)
        for t in range(5, int(duration) + 1, 5):
            track("progress", t, watch_time_delta_seconds=5.0, rendition="720p" if t < 10 else "480p")
            if t == 10:
                track("quality_switch", t, from_quality="720p", to_quality="480p", bandwidth=1_800_000,
                      buffer_level=3.5, reason="low_buffer")
                track("rebuffer_start", t)
                track("rebuffer_end", t + 0.8, rebuffer_duration_ms=800)
        if i % 2 == 0:
            track("like", duration / 2)
        if i == 0:
            track("share", duration / 2)
        track("ended", duration, position_seconds=duration)
        if not client.flush(30):
            raise RuntimeError(f"playback events of {viewer} not accepted: {client.stats}")
        client.close()
        sessions += 1
    return sessions


def wait_for_analytics(api_url: str, video_id: str, views: int) -> dict[str, Any]:
    deadline = time.monotonic() + ANALYTICS_DEADLINE
    with httpx.Client(base_url=api_url, timeout=15) as http:
        while time.monotonic() < deadline:
            result = http.get(f"/v1/videos/{video_id}/analytics").json()
            if result.get("total_views", 0) >= views and result.get("completed_views", 0) >= views:
                return result
            time.sleep(0.5)
    raise TimeoutError(f"analytics for {video_id} did not reach {views} views in {ANALYTICS_DEADLINE:.0f}s")


def run_demo(config: Config) -> int:
    say("== 1. services")
    api_url = start_services(config)

    say("== 2. a clip goes in")
    clip = config.stack.state_dir / "demo" / "sample.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    fc.run_ffmpeg(fc.sample_clip_args(clip))
    video_id = upload_resumable(api_url, clip, owner=DEMO_OWNER)
    say(f"  uploaded {clip.name} ({clip.stat().st_size:,} bytes) as video {video_id}")

    say("== 3. the pipeline (events on video.stage-transitions)")
    started = time.monotonic()
    status = follow_pipeline(api_url, video_id)
    if status.get("state") != "ready":
        say(f"  FAILED: {json.dumps(status.get('error'))}")
        return 1
    say(f"  ready in {time.monotonic() - started:.1f}s")

    say("== 4. encrypted HLS comes out")
    renditions = verify_playable(config, api_url, video_id)
    say(f"  s3://{config.object_storage.bucket}/hls/{video_id}/{MASTER_NAME} with {', '.join(renditions)}")

    say("== 5. viewers play it (events to POST /v1/events → playback.events)")
    sessions = simulate_viewers(api_url, video_id, duration=24.0)
    say(f"  {sessions} sessions sent")

    say("== 6. analytics from ClickHouse (GET /v1/videos/{id}/analytics)")
    result = wait_for_analytics(api_url, video_id, sessions)
    json.dump(result, sys.stdout, indent=2)
    say("")
    say(f"Try: framelog sql \"SELECT type, count() FROM playback_events WHERE video_id = '{video_id}' "
        "GROUP BY type\"")
    say(f"     framelog status {video_id}      framelog events tail video.assets --from-beginning --limit 1")
    return 0
