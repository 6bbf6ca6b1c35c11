"""DELETE /videos/{id} against the running pipeline and the analytics store, on the real stack.

Real processes: the worker supervisor (every stage, ffmpeg) and the API
(which owns the embedded ClickHouse engine and runs the analytics sink).
Deletion must win over processing: a video deleted while transcoding runs
ends with that stage ``cancelled`` and no object of it left anywhere, no
stage ``failed``, nothing dead-lettered. Its playback analytics stay.
Every wait is a condition with a deadline.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from framelog.core.ids import validate_video_id
from framelog.core.object_keys import video_prefixes
from framelog.pipeline.jobs.tombstones import is_deleted
from framelog.processors.identity import Keyring, mint_token
from framelog.schemas.events import new_event
from framelog.sinks.object_store import ObjectStore
from framelog.stack.services import ApiService, WorkerService
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from framelog_client.upload import upload_resumable
from tests.integration.support import TopicRecorder, running, wait_for
from tests.media.support import clips

pytestmark = pytest.mark.integration

PIPELINE_DEADLINE = 420.0
DEADLINE = 60.0
# Long enough that transcoding (a 720p ladder) is still running when the DELETE lands.
CLIP = {"width": 1280, "height": 720, "duration": 10}
OWNER = "alice"


@pytest.fixture(scope="module")
def api(stack, config) -> str:
    with running(ApiService(config), 120) as service:
        yield service.address


@pytest.fixture(scope="module")
def worker(stack, config):
    with running(WorkerService(config), 300) as service:
        yield service


@pytest.fixture(scope="module")
def recorder(stack, config):
    """Stage and chunk transitions and every pipeline stage's dead letters, by video."""
    dlqs = tuple(topics.topic_spec(topics.pipeline_topic(s), config.topics).dlq for s in config.pipeline.stage_names)
    rec = TopicRecorder(config, (topics.STAGE_TRANSITIONS, topics.CHUNK_TRANSITIONS, *dlqs),
                        group_prefix="it-deletion").start()
    assert rec.wait_ready(DEADLINE), rec.last_error
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def owner_token(config) -> str:
    return mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), OWNER, scopes=["videos:write"])


@pytest.fixture(scope="module")
def owner(owner_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {owner_token}"}


def objects_of(store: ObjectStore, video_id: str) -> list[str]:
    """Every object left of the video: under its prefixes, and its MP4 (videos/…/{id}.mp4)."""
    left = [k for p in video_prefixes(video_id) for k in store.keys(p)]
    return left + [k for k in store.keys("videos/") if k.endswith(f"/{video_id}.mp4")]


def transitions(recorder: TopicRecorder, video_id: str, **match: str) -> list[dict]:
    return [t for t in recorder.of(video_id, "StageTransition") if all(t[k] == v for k, v in match.items())]


def chunks_settled(recorder: TopicRecorder, video_id: str) -> bool:
    """Every chunk job of the video has ended (succeeded, failed or cancelled): none queued or running."""
    last: dict[tuple[str, int], str] = {}
    for t in recorder.of(video_id, "ChunkTransition"):
        last[(t["job_id"], t["chunk_index"])] = t["state"]
    return all(state in ("succeeded", "failed", "cancelled") for state in last.values())


def test_delete_while_transcoding_wins(api, worker, recorder, owner, owner_token, config, tmp_path):
    clip = clips.video(tmp_path / "deleted.mp4", **CLIP)
    vid = upload_resumable(api, clip, token=owner_token, visibility="private")
    recorder.wait(vid, "StageTransition", lambda t: (t["stage"], t["state"]) == ("transcoding", "started"),
                  PIPELINE_DEADLINE)

    r = httpx.delete(f"{api}/videos/{vid}", params={"reason": "deleted mid-pipeline"}, headers=owner, timeout=30)
    assert r.status_code == 200, r.text
    store = ObjectStore(config.object_storage, config.stack.state_dir)
    assert is_deleted(store, vid)

    # settled: the stage that was running drops the job (after removing what it wrote); nothing follows
    cancelled = recorder.wait(vid, "StageTransition", lambda t: t["state"] == "cancelled", PIPELINE_DEADLINE)
    assert (cancelled["stage"], cancelled["error_type"]) == ("transcoding", "video_deleted"), cancelled
    assert not transitions(recorder, vid, stage="transcoding", state="succeeded")
    # a chunk still encoding when the DELETE landed finishes, sees the tombstone and removes what it wrote
    wait_for(lambda: chunks_settled(recorder, vid), "every started chunk of the deleted video to settle",
             PIPELINE_DEADLINE)
    assert objects_of(store, vid) == []
    assert recorder.wait_caught_up(DEADLINE)            # every record written so far has been read
    assert not transitions(recorder, vid, state="failed")
    assert not transitions(recorder, vid, state="retrying")
    later = config.pipeline.stage_names[config.pipeline.stage_names.index("transcoding") + 1:]
    assert not [t for t in transitions(recorder, vid) if t["stage"] in later]
    assert recorder.of(vid, "DeadLetter") == []
    assert httpx.get(f"{api}/videos/{vid}", headers=owner, timeout=10).json()["state"] == "deleted"

    # a redelivered upload of the deleted video is dropped at intake
    with EventProducer(config.streams) as producer:
        producer.send(topics.UPLOADS, "UploadCompleted", new_event(
            "UploadCompleted", video_id=vid, owner_id=OWNER, object_key=f"uploads/{vid}/source.mp4",
            size_bytes=1, sha256="0" * 64, content_type="video/mp4", original_filename="x.mp4"))
    first = config.pipeline.stage_names[0]
    recorder.wait(vid, "StageTransition", lambda t: (t["stage"], t["state"]) == (first, "cancelled"), DEADLINE)
    assert len(transitions(recorder, vid, stage=first, state="started")) == 1      # the upload's first run only


def _analytics(api: str, video_id: str, owner: dict[str, str]) -> dict:
    r = httpx.get(f"{api}/v1/videos/{video_id}/analytics", headers=owner, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_analytics_of_a_deleted_video_stay(api, worker, owner, owner_token, config, tmp_path):
    vid = validate_video_id(upload_resumable(api, clips.very_short(tmp_path / "short.mp4"), token=owner_token,
                                             visibility="public"))
    # a viewer opens the video (GET /v1/stream records its view_start and issues the session) and reports
    stream = wait_for(lambda: (lambda r: r.status_code == 200 and r.json())(
        httpx.get(f"{api}/v1/stream", params={"video_id": vid}, timeout=10)), "the stream API to play it", DEADLINE)
    now = int(time.time() * 1000)
    base = {"client_time": now - 5000}
    events = [{"type": "view_start"},            # stands for the stream API's: counted in the totals below
              dict(base, type="progress", event_id=str(uuid.uuid4()), position_seconds=4, watch_time_delta_seconds=4),
              dict(base, type="like", event_id=str(uuid.uuid4()), position_seconds=4)]
    assert httpx.post(f"{api}/v1/events", json={"session": stream["session"], "events": events[1:]},
                      timeout=30).status_code == 202
    before = wait_for(lambda: (lambda a: a if a["events"] >= len(events) else None)(_analytics(api, vid, owner)),
                      "the events to be in ClickHouse", DEADLINE, step=0.5)
    assert (before["total_views"], before["likes"], before["total_watch_time"]) == (1, 1, 4.0)

    r = httpx.delete(f"{api}/videos/{vid}", headers=owner, timeout=30)
    assert r.status_code == 200, r.text
    wait_for(lambda: httpx.get(f"{api}/videos/{vid}", headers=owner, timeout=10).json().get("state") == "deleted",
             "the status to say deleted", DEADLINE)

    after = _analytics(api, vid, owner)
    assert {k: after[k] for k in ("total_views", "likes", "total_watch_time", "events")} == \
        {k: before[k] for k in ("total_views", "likes", "total_watch_time", "events")}
    out = subprocess.run([sys.executable, "-m", "framelog.cli.main", "sql", "--json", "--param", f"v={vid}",
                          "SELECT count() FROM playback_events WHERE video_id = {v:String}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == [[len(events)]]
