"""GET /videos/{id}/events (server-sent events) and ``framelog status --follow`` on the real stack.

The API runs in this process (uvicorn on a free port, heartbeats every 200 ms);
transitions are written to the real log. The stream must replay what happened
so far, follow what happens next, beat while idle, end when the video is
ready or failed, and open only to the owner or the video's workspace.
The CLI follows the same stream and exits 0 on ready.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn

from framelog.cli.live import sse_events
from framelog.core import object_keys
from framelog.processors.identity import Keyring, mint_token
from framelog.schemas.events import new_event
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from tests.integration.support import wait_for
from tests.integration.support.webhook_receiver import make_app, webhook_overlay

pytestmark = pytest.mark.integration

DEADLINE = 60.0


@pytest.fixture(scope="module")
def live(stack, config, tmp_path_factory):
    """(base URL, config, overlay) of an API with fast heartbeats."""
    overlay, cfg = webhook_overlay(config, tmp_path_factory.mktemp("live"))
    overlay.write_text(overlay.read_text() + "live_progress:\n  heartbeat_interval: 200ms\n  max_stream_duration: 5m\n")
    from framelog.core.config import load_config
    cfg = load_config(overlay=overlay)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: server.started, "the API to start", DEADLINE)
    yield base, cfg, overlay
    server.should_exit = True
    thread.join(30)


def bearer(cfg, user, workspaces=()):
    return {"Authorization": "Bearer " + mint_token(cfg.auth, Keyring(cfg.auth, cfg.stack.state_dir),
                                                    user, workspaces=workspaces, scopes=[])}


class Transitions:
    """Writes a fake pipeline's transitions for one video onto the real log."""

    def __init__(self, cfg, video_id: str, owner: str, workspace: str | None = None):
        self.producer = EventProducer(cfg.streams)
        self.video_id, self.job = video_id, f"j-{video_id}"
        self.t = datetime.now(UTC)
        self.producer.deliver(topics.ACCESS, "AccessPolicy", new_event(
            "AccessPolicy", video_id=video_id, owner_id=owner, workspace_id=workspace, visibility="private"))
        self.producer.deliver(topics.UPLOADS, "UploadCompleted", new_event(
            "UploadCompleted", video_id=video_id, object_key=object_keys.raw_upload(video_id), size_bytes=1,
            sha256="0" * 64, content_type="video/mp4", owner_id=owner))

    def __call__(self, stage: str, state: str, progress: float = 0.0, **extra) -> None:
        self.t += timedelta(milliseconds=5)
        self.producer.deliver(topics.STAGE_TRANSITIONS, "StageTransition", new_event(
            "StageTransition", video_id=self.video_id, job_id=self.job, stage=stage, state=state, attempt=1,
            progress=progress, event_time=self.t, **extra))


def test_stream_replays_follows_beats_and_ends(live):
    base, cfg, _ = live
    owner, vid = f"olga-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:10]}"
    write = Transitions(cfg, vid, owner, workspace="studio")
    first, *rest = cfg.pipeline.stage_names
    write(first, "queued")
    write(first, "started")
    write(first, "succeeded")

    url = f"{base}/videos/{vid}/events"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=bearer(cfg, "mallory")).status_code == 403
    with httpx.stream("GET", url, headers=bearer(cfg, "wanda", ("studio",)), timeout=10) as r:
        assert r.status_code == 200                          # a member of the video's workspace may watch
    events: list[tuple[str, dict]] = []
    beats = [0]

    def read() -> None:
        with httpx.stream("GET", url, headers=bearer(cfg, owner), timeout=httpx.Timeout(10, read=30)) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith(": keepalive"):
                    beats[0] += 1
            # (re-read through the parser below for the events)

    def parse() -> None:
        with httpx.stream("GET", url, headers=bearer(cfg, owner), timeout=httpx.Timeout(10, read=30)) as r:
            for event, data in sse_events(r):
                events.append((event, data))

    reader, beater = threading.Thread(target=parse, daemon=True), threading.Thread(target=read, daemon=True)
    reader.start()
    beater.start()
    wait_for(lambda: any(e == "status" for e, _ in events), "the replayed status", DEADLINE)
    replayed = [d for e, d in events if e == "transition"]
    assert [(d["stage"], d["state"], d["replayed"]) for d in replayed] == [(first, "succeeded", True)]
    wait_for(lambda: beats[0] >= 2, "heartbeats while idle", DEADLINE)

    for stage in rest:
        write(stage, "started")
        write(stage, "progress", 0.5)
        write(stage, "succeeded")
    reader.join(DEADLINE)
    assert not reader.is_alive(), "the stream did not end when the video was ready"
    live_ones = [(d["stage"], d["state"]) for e, d in events if e == "transition" and not d["replayed"]]
    assert live_ones == [(s, st) for s in rest for st in ("started", "progress", "succeeded")]
    assert events[-1][0] == "end" and events[-1][1]["state"] == "ready"
    beater.join(DEADLINE)

    # a finished video: the stream replays and ends at once
    with httpx.stream("GET", url, headers=bearer(cfg, owner), timeout=10) as r:
        again = list(sse_events(r))
    assert again[-1][0] == "end" and len([e for e, _ in again if e == "transition"]) == len(cfg.pipeline.stage_names)


def test_cli_status_follow_shows_the_stages_and_exits_on_failure(live):
    base, cfg, overlay = live
    owner, vid = f"pia-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:10]}"
    write = Transitions(cfg, vid, owner)
    first, second, *_ = cfg.pipeline.stage_names
    env = {**os.environ, "FRAMELOG_CONFIG_OVERLAY": str(overlay), "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "framelog.cli.main", "status", vid, "--follow", "--api", base],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    write(first, "queued")
    write(first, "succeeded")
    write(second, "started")
    write(second, "failed", error_type="invalid_media", error_message="no video stream")
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1, err
    assert first in err and second in err and "invalid_media" in err


def test_version_and_sql_formats(live):
    _, cfg, overlay = live
    env = {**os.environ, "FRAMELOG_CONFIG_OVERLAY": str(overlay)}
    out = subprocess.run([sys.executable, "-m", "framelog.cli.main", "--version"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("framelog ")


def test_upload_wait_follows_the_real_pipeline(stack, config, tmp_path):
    """`framelog upload FILE --wait` against the real API and worker: a bar per stage, exit 0 once ready."""
    from framelog.stack.services import ApiService, WorkerService
    from tests.integration.support import running
    from tests.media.support import clips

    clip = clips.video(tmp_path / "wait.mp4", duration=4)
    with running(ApiService(config), 120) as api, running(WorkerService(config), 300):
        out = subprocess.run([sys.executable, "-m", "framelog.cli.main", "upload", str(clip), "--wait", "--api",
                              api.address], env={**os.environ, "COLUMNS": "120"}, capture_output=True, text=True,
                             timeout=420)
        assert out.returncode == 0, out.stderr[-2000:]
        video_id = out.stdout.strip()
        for stage in config.pipeline.stage_names:
            assert stage in out.stderr and "succeeded" in out.stderr
        assert f"video {video_id}: ready" in out.stderr
        r = httpx.get(f"{api.address}/videos/{video_id}/events",
                      headers=bearer(config, "local-user") | {"Accept": "text/event-stream"}, timeout=30)
        assert r.status_code == 200 and "event: end" in r.text
