"""Resumable uploads through the API, and video status from the stage-transition log, on the real stack.

Every wait is a condition with a deadline. The upload tests count UploadCompleted
records per video by reading ``video.uploads`` up to its end offsets, so
"exactly one" is an exact statement, not a hope after a pause.
"""
from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from framelog.api import services
from framelog.api.upload_protocol import MIB, OFFSET_CONTENT_TYPE, parse_upload_metadata
from framelog.core import object_keys
from framelog.core.config import Config
from framelog.processors.identity import Keyring, mint_token
from framelog.schemas.events import new_event
from framelog.sinks.object_store import ObjectStore
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from framelog.views.status import StatusFold, StatusTable
from framelog_client.upload import ResumableUploader, upload_resumable
from tests.integration.support import wait_for
from tests.integration.support.upload_api import LiveApi, make_app, upload_records

DEADLINE = 90.0
PATCH_HEADERS = {"Content-Type": OFFSET_CONTENT_TYPE, "Tus-Resumable": "1.0.0"}


def token(config: Config, sub: str, *scopes: str) -> str:
    return mint_token(config.auth, Keyring(config.auth, config.stack.state_dir),
                      sub, scopes=scopes or ("videos:write",))


def auth(config: Config, sub: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(config, sub, *scopes)}"}


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, MIB))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


class FlakyTransport(httpx.HTTPTransport):
    """Loses the response of chosen PATCH requests (numbered from 1) after the server got them."""

    def __init__(self, lose_response_of: set[int], refuse: set[int] = frozenset()):
        super().__init__()
        self.lose, self.refuse = set(lose_response_of), set(refuse)
        self.patches = 0
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            self.patches += 1
            if self.patches in self.refuse:
                self.lost += 1
                raise httpx.ConnectError("injected: connection refused", request=request)
            if self.patches in self.lose:
                response = super().handle_request(request)
                response.read()
                response.close()
                self.lost += 1
                raise httpx.ReadError("injected: connection reset before the response", request=request)
        return super().handle_request(request)


# ------------------------------------------------------------------ upload: the whole path

@pytest.mark.integration
def test_resumable_upload_survives_interruption_and_api_restart(stack, config, tmp_path):
    size = 20 * MIB
    src = tmp_path / "clip.mp4"
    expected = random_file(src, size)

    class Interrupted(Exception):
        pass

    def stop_after_first_chunk(done: int, total: int) -> None:
        if done >= 8 * MIB:
            raise Interrupted()

    # client 1 against API process 1: creates the upload, sends one chunk, then dies
    with LiveApi(config) as api1:
        with ResumableUploader(api1.url, progress=stop_after_first_chunk, token=token(config, "it-owner"),
                               chunk_size=8 * MIB) as client1:
            upload_url = client1.create(src)
            with pytest.raises(Interrupted):
                client1.resume(upload_url, src)
    video_id = upload_url.rstrip("/").split("/")[-2]
    path = f"/videos/{video_id}/upload"

    # client 2 against a new API process: learns the offset with HEAD and finishes, through a flaky network
    with LiveApi(config) as api2:
        owner = {**auth(config, "it-owner"), "Tus-Resumable": "1.0.0"}
        assert httpx.head(api2.url + path).status_code == 401
        assert httpx.head(api2.url + path, headers={**owner, **auth(config, "someone-else")}).status_code == 404
        head = httpx.head(api2.url + path, headers=owner)
        assert head.status_code == 200
        assert int(head.headers["Upload-Offset"]) == 8 * MIB and int(head.headers["Upload-Length"]) == size
        # PATCH 1 (8..16 MiB) lands but its answer is lost; PATCH 2 (final) is refused; PATCH 3 (final) lands,
        # completes the upload, and its answer is lost too; the client then HEADs and asks for the result.
        transport = FlakyTransport(lose_response_of={1, 3}, refuse={2})
        with httpx.Client(transport=transport, timeout=httpx.Timeout(30, read=300)) as http:
            client2 = ResumableUploader(api2.url, http=http, backoff_initial=0.01, token=token(config, "it-owner"),
                                        chunk_size=8 * MIB)
            outcome = client2.resume(api2.url + path, src)
        assert transport.lost == 3 and client2.retries == 3

        assert outcome.video_id == video_id
        assert outcome.size_bytes == size and outcome.sha256 == expected

        store = ObjectStore(config.object_storage, config.stack.state_dir)
        assert store.sha256(object_keys.raw_upload(video_id)) == (expected, size)
        assert store.head(object_keys.upload_session(video_id)) is None

        # a retried final PATCH after completion: 409 with the final offset, nothing emitted again
        with src.open("rb") as f:
            f.seek(16 * MIB)
            last = f.read()
        again = httpx.patch(api2.url + path, content=last,
                            headers={**PATCH_HEADERS, "Upload-Offset": str(16 * MIB), **owner})
        assert again.status_code == 409 and again.headers["Upload-Offset"] == str(size)
        empty = httpx.patch(api2.url + path, headers={**PATCH_HEADERS, "Upload-Offset": str(size), **owner})
        assert empty.status_code == 204 and empty.headers["Upload-Offset"] == str(size)
        assert httpx.head(api2.url + path, headers=owner).headers["Upload-Offset"] == str(size)

    records = upload_records(config, video_id)
    assert len(records) == 1, records
    event = records[0]
    assert event["sha256"] == expected and event["size_bytes"] == size
    assert event["object_key"] == object_keys.raw_upload(video_id)
    assert event["owner_id"] == "it-owner" and event["original_filename"] == "clip.mp4"
    assert event["content_type"] == "video/mp4"


@pytest.mark.integration
def test_cli_upload_prints_the_video_id(stack, config, tmp_path, capsys):
    from framelog.cli.main import main

    src = tmp_path / "small.mov"
    expected = random_file(src, 6 * MIB + 123)        # two PATCHes: 5 MiB (a partial part), then the tail
    with LiveApi(config) as api:
        assert main(["upload", str(src), "--api", api.url, "--chunk-mib", "5", "--quiet"]) == 0
        video_id = capsys.readouterr().out.strip()
        assert upload_records(config, video_id)[0]["sha256"] == expected
        # and the plain client function against the same API, in chunks smaller than an S3 part
        other = upload_resumable(api.url, src, token=token(config, "someone"), chunk_size=MIB + 7)
        assert other != video_id and len(upload_records(config, other)) == 1


# ------------------------------------------------------------------ upload: refusals

@pytest.fixture()
def client(stack, config):
    """As it-owner, who may also read any video's status (ops); speaking tus 1.0.0."""
    with TestClient(make_app(config), headers={**auth(config, "it-owner", "videos:write", "ops"),
                                               "Tus-Resumable": "1.0.0"}) as c:
        yield c


def checksum(algorithm: str, body: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, body).digest()).decode()}"


@pytest.mark.integration
def test_tus_core_creation_termination_checksum(client, config):
    """tus 1.0.0: 412, 415, 409, chunks of any size (a partial part kept in object storage), 460 discards,
    413, HEAD no-store, method override, DELETE."""
    data = os.urandom(12 * MIB + 5)
    r = client.post("/videos", headers={"Upload-Length": str(len(data)), "Tus-Resumable": "0.2.2"})
    assert r.status_code == 412 and r.headers["Tus-Version"] == "1.0.0"
    r = client.post("/videos", headers={"Upload-Length": str(len(data))}, params={"filename": "x.mp4"})
    assert r.status_code == 201 and r.headers["Tus-Resumable"] == "1.0.0"
    loc = r.headers["Location"]
    assert loc == f"/videos/{r.json()['video_id']}/upload"

    def patch(offset: int, body: bytes, **headers: str) -> httpx.Response:
        return client.patch(loc, content=body, headers={**PATCH_HEADERS, "Upload-Offset": str(offset), **headers})

    assert patch(5, data[:MIB]).status_code == 409
    assert client.patch(loc, content=data[:MIB], headers={"Content-Type": "application/octet-stream",
                                                          "Upload-Offset": "0"}).status_code == 415
    assert patch(0, data[:MIB], **{"Tus-Resumable": "2.0.0"}).status_code == 412
    r = patch(0, data[:MIB])                                   # under an S3 part: kept as the partial object
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(MIB) and not r.content
    head = client.head(loc)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(MIB)
    assert head.headers["Upload-Length"] == str(len(data)) and head.headers["Cache-Control"] == "no-store"
    assert parse_upload_metadata(head.headers["Upload-Metadata"]) == {"filename": "x.mp4", "filetype": "video/mp4"}
    r = patch(MIB, data[MIB:3 * MIB], **{"Upload-Checksum": checksum("sha1", b"something else")})
    assert r.status_code == 460 and r.headers["Upload-Offset"] == str(MIB)      # discarded
    assert patch(MIB, data[MIB:2 * MIB], **{"Upload-Checksum": "crc32 AAAA"}).status_code == 400
    r = patch(MIB, data[MIB:10 * MIB], **{"Upload-Checksum": checksum("sha1", data[MIB:10 * MIB])})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(10 * MIB)  # one 8 MiB part + 2 MiB partial
    assert patch(0, data[:MIB]).status_code == 409                          # a replayed chunk
    assert patch(10 * MIB, os.urandom(3 * MIB)).status_code == 413           # overruns Upload-Length
    via_post = client.post(loc, headers={"X-HTTP-Method-Override": "HEAD"})
    assert via_post.status_code == 200 and via_post.headers["Upload-Offset"] == str(10 * MIB)
    via_post = client.post(loc, content=data[10 * MIB:11 * MIB],
                           headers={**PATCH_HEADERS, "Upload-Offset": str(10 * MIB), "X-HTTP-Method-Override": "PATCH"})
    assert via_post.status_code == 204 and via_post.headers["Upload-Offset"] == str(11 * MIB)

    video_id = loc.split("/")[2]
    status = client.get(f"/videos/{video_id}")
    assert status.status_code == 200 and status.json()["state"] == "uploading"
    assert status.json()["upload"]["offset"] == 11 * MIB

    assert client.delete(loc, headers={"Tus-Resumable": "0.1"}).status_code == 412
    assert client.delete(loc).status_code == 204                            # termination
    assert client.head(loc).status_code == 404
    assert patch(11 * MIB, data[11 * MIB:]).status_code == 404


@pytest.mark.integration
def test_tus_completion_is_204_and_announced_once(client, config):
    data = os.urandom(9 * MIB + 3)
    r = client.post("/videos", headers={"Upload-Length": str(len(data))}, params={"filename": "y.mp4"})
    loc, video_id = r.headers["Location"], r.json()["video_id"]
    for start, end in ((0, 3 * MIB), (3 * MIB, 9 * MIB), (9 * MIB, len(data))):
        r = client.patch(loc, content=data[start:end], headers={**PATCH_HEADERS, "Upload-Offset": str(start)})
        assert r.status_code == 204 and r.headers["Upload-Offset"] == str(end) and not r.content
    assert client.head(loc).headers["Upload-Offset"] == str(len(data))
    [event] = upload_records(config, video_id)
    assert event["sha256"] == hashlib.sha256(data).hexdigest() and event["size_bytes"] == len(data)
    listed = ObjectStore(config.object_storage, config.stack.state_dir).keys(object_keys.upload_root(video_id))
    assert sorted(k.rsplit("/", 1)[-1] for k in listed) == ["_receipt.json", "original"]


@pytest.mark.integration
def test_options_and_cors(stack, config):
    from framelog.api.app import add_cors

    def options(app, path: str, **kw):            # the route reads the app's Services: run its lifespan
        with TestClient(app) as c:
            return c.options(path, **kw)

    opts = options(make_app(config), "/videos")
    assert opts.status_code == 204
    assert opts.headers["Tus-Version"] == "1.0.0" and opts.headers["Tus-Max-Size"] == str(config.upload_limits.max_size)
    assert set(opts.headers["Tus-Extension"].split(",")) == {"creation", "termination", "checksum"}
    assert "sha1" in opts.headers["Tus-Checksum-Algorithm"].split(",")

    preflight = {"Origin": "https://studio.example", "Access-Control-Request-Method": "PATCH",
                 "Access-Control-Request-Headers": "upload-offset,tus-resumable,content-type,authorization"}
    closed = make_app(config)                          # the default: no origin allowed
    add_cors(closed, config)
    r = options(closed, "/videos/x/upload", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    from dataclasses import replace
    opened = make_app(config)
    add_cors(opened, replace(config, cors=replace(config.cors, allowed_origins=("https://studio.example",))))
    r = options(opened, "/videos/x/upload", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://studio.example"
    assert "upload-offset" in r.headers["access-control-allow-headers"].lower()
    r = options(opened, "/videos", headers={"Origin": "https://studio.example"})
    exposed = r.headers["access-control-expose-headers"].lower()
    assert all(h in exposed for h in ("upload-offset", "location", "upload-length", "tus-version"))
    r = options(opened, "/videos/x/upload", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.integration
def test_too_large_is_413_and_bad_headers_400(client, config):
    limit = config.upload_limits.max_size
    assert client.post("/videos", headers={"Upload-Length": str(limit + 1)}).status_code == 413
    assert client.post("/videos").status_code == 400
    assert client.post("/videos", headers={"Upload-Length": "lots"}).status_code == 400
    assert client.post("/videos", headers={"Upload-Length": "10", "Upload-Metadata": "filename !!"}).status_code == 400
    opts = client.options("/videos")
    assert opts.status_code == 204 and opts.headers["Tus-Max-Size"] == str(limit)


@pytest.mark.integration
@pytest.mark.parametrize("bad", ["bad.id", "a" * 65, "x%20y", "%2E%2E"])
def test_bad_ids_are_400(client, bad):
    assert client.head(f"/videos/{bad}/upload").status_code == 400
    assert client.patch(f"/videos/{bad}/upload", content=b"x",
                        headers={**PATCH_HEADERS, "Upload-Offset": "0"}).status_code == 400
    assert client.delete(f"/videos/{bad}/upload").status_code == 400
    assert client.get(f"/videos/{bad}").status_code == 400


@pytest.mark.integration
def test_unknown_uploads_are_404(client):
    unknown = uuid.uuid4().hex
    assert client.head(f"/videos/{unknown}/upload").status_code == 404
    assert client.patch(f"/videos/{unknown}/upload", content=b"x",
                        headers={**PATCH_HEADERS, "Upload-Offset": "0"}).status_code == 404
    assert client.get(f"/videos/{unknown}").status_code == 404


# ------------------------------------------------------------------ status

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def transition(video_id: str, stage: str, state: str, second: float, job: str = "job-1", **extra: Any) -> dict:
    return new_event("StageTransition", video_id=video_id, job_id=job, stage=stage, state=state,
                     event_time=T0 + timedelta(seconds=second), **extra)


@pytest.mark.integration
def test_status_endpoint_follows_transitions_and_survives_replay(client, config, capsys):
    stages = config.pipeline.stage_names
    first, second = stages[0], stages[1]
    vid = f"it-status-{uuid.uuid4().hex[:10]}"
    with EventProducer(config.streams) as producer:
        for event in [
            transition(vid, first, "queued", 0),
            transition(vid, first, "started", 1),
            transition(vid, first, "progress", 2, progress=0.5),
            transition(vid, first, "succeeded", 3, duration_ms=2000, outputs={"probe": "ok"}),
            transition(vid, first, "progress", 2.5, progress=0.9),          # stale: after succeeded
            transition(vid, second, "started", 4),
            transition(vid, second, "progress", 5, progress=0.25),
        ]:
            producer.send(topics.STAGE_TRANSITIONS, "StageTransition", event)

    def view() -> dict | None:
        r = client.get(f"/videos/{vid}")
        assert r.status_code in (200, 404), r.text
        return r.json() if r.status_code == 200 else None

    v = wait_for(lambda: (lambda x: x if x and x["stages"].get(second, {}).get("progress") == 0.25 else None)(view()),
                 "the status to show the second stage's progress", DEADLINE)
    assert v["state"] == "processing" and v["current_stage"] == second and v["error"] is None
    assert v["stages"][first]["state"] == "succeeded" and v["stages"][first]["progress"] == 1.0
    assert v["stages"][first]["duration_ms"] == 2000 and v["stages"][first]["outputs"] == {"probe": "ok"}
    assert v["stages"][second]["state"] == "progress"
    assert 0 < v["progress"] < 1

    with EventProducer(config.streams) as producer:
        producer.send(topics.STAGE_TRANSITIONS, "StageTransition",
                      transition(vid, second, "retrying", 6, error_type="timeout", error_message="took too long"))
        producer.send(topics.STAGE_TRANSITIONS, "StageTransition",
                      transition(vid, second, "failed", 8, attempt=2, error_type="invalid_media",
                                 error_message="no video stream", duration_ms=1500))

    v = wait_for(lambda: (lambda x: x if x and x["state"] == "failed" else None)(view()),
                 "the failure to show", DEADLINE)
    assert v["current_stage"] == second
    assert v["error"] == {"stage": second, "error_type": "invalid_media", "error_message": "no video stream",
                          "attempt": 2}
    assert v["stages"][second]["attempt"] == 2

    # the log is the table: a new instance replays it to the same answer once caught up
    with StatusTable(config.streams, config.pipeline.stage_names) as replayed:
        assert replayed.wait_ready(DEADLINE), replayed.last_error
        assert replayed.get(vid) == v

    # and the command line reads it the same way
    from framelog.cli.main import main
    assert main(["status", vid]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "invalid_media" in out and "no video stream" in out


@pytest.mark.integration
def test_status_ready_when_the_last_stage_succeeded(client, config):
    vid = f"it-ready-{uuid.uuid4().hex[:10]}"
    with EventProducer(config.streams) as producer:
        for i, stage in enumerate(config.pipeline.stage_names):
            producer.send(topics.STAGE_TRANSITIONS, "StageTransition", transition(vid, stage, "started", 2 * i))
            producer.send(topics.STAGE_TRANSITIONS, "StageTransition", transition(vid, stage, "succeeded", 2 * i + 1))

    def ready() -> dict | None:
        r = client.get(f"/videos/{vid}")
        return r.json() if r.status_code == 200 and r.json()["state"] == "ready" else None

    v = wait_for(ready, "the video to be ready", DEADLINE)
    assert v["progress"] == 1.0 and v["error"] is None
    assert v["current_stage"] == config.pipeline.stage_names[-1]
    assert all(s["state"] == "succeeded" for s in v["stages"].values())


# ------------------------------------------------------------------ the fold, without Kafka

def fold_of(records: list[dict], stages=("validation", "transcoding", "cdn_upload")) -> StatusFold:
    fold = StatusFold(stages)
    for r in records:
        fold.apply(r)
    return fold


def test_fold_ignores_stale_and_lower_attempts():
    v = "v1"
    fold = fold_of([
        transition(v, "validation", "started", 1),
        transition(v, "validation", "succeeded", 3),
        transition(v, "validation", "progress", 4, progress=0.5),             # same attempt, after succeeded
        transition(v, "transcoding", "failed", 10, attempt=2, error_type="x", error_message="y"),
        transition(v, "transcoding", "progress", 11, attempt=1, progress=0.7),  # an older attempt
    ])
    view = fold.view(v)
    assert view["stages"]["validation"]["state"] == "succeeded"
    assert view["stages"]["transcoding"]["state"] == "failed"
    assert view["state"] == "failed" and view["error"]["stage"] == "transcoding"
    assert fold.ignored == 2


def test_fold_out_of_order_progress_and_replay_idempotence():
    v = "v2"
    records = [
        transition(v, "validation", "progress", 5, progress=0.6),
        transition(v, "validation", "progress", 4, progress=0.4),   # older: ignored
        transition(v, "validation", "started", 3),                 # older: ignored
    ]
    fold = fold_of(records)
    assert fold.view(v)["stages"]["validation"]["progress"] == 0.6
    before = fold.view(v)
    for r in records:                                              # replaying the same log changes nothing
        fold.apply(r)
    assert fold.view(v) == before


def test_fold_retry_then_success_and_new_job_starts_over():
    v = "v3"
    fold = fold_of([
        transition(v, "validation", "succeeded", 1),
        transition(v, "transcoding", "retrying", 2, error_type="timeout", error_message="slow"),
        transition(v, "transcoding", "started", 3, attempt=2),
        transition(v, "transcoding", "succeeded", 4, attempt=2),
        transition(v, "cdn_upload", "succeeded", 5),
    ])
    view = fold.view(v)
    assert view["state"] == "ready" and view["progress"] == 1.0
    fold.apply(transition(v, "validation", "queued", 10, job="job-2"))
    view = fold.view(v)
    assert view["job_id"] == "job-2" and view["state"] == "processing" and list(view["stages"]) == ["validation"]
    assert not fold.apply(transition(v, "cdn_upload", "succeeded", 11, job="job-1"))   # the old job is over
    assert fold.view(v) is not None and fold.view("nobody") is None


def test_status_is_503_while_the_table_cannot_catch_up(config, monkeypatch):
    """With no reachable broker the table never catches up: the API says so instead of answering 404."""
    from dataclasses import replace

    monkeypatch.setattr(services, "STATUS_READY_TIMEOUT", 0.5)
    unreachable = replace(config, kafka=replace(config.kafka, bootstrap_servers="127.0.0.1:9"))
    with TestClient(make_app(unreachable), headers=auth(config, "operator", "ops")) as c:
        r = c.get(f"/videos/{uuid.uuid4().hex}")
        assert r.status_code == 503 and r.headers["Retry-After"]


@pytest.mark.integration
def test_a_second_patch_while_one_runs_is_423(stack, config):
    """One PATCH at a time per upload: a retry racing a request still streaming gets 423 (tus clients retry)."""
    import threading

    owner = {**auth(config, "it-owner"), "Tus-Resumable": "1.0.0"}
    data = os.urandom(3 * MIB)
    release, started = threading.Event(), threading.Event()

    def slow_body():
        yield data[:MIB]
        started.set()
        release.wait(60)
        yield data[MIB:]

    with LiveApi(config) as api:
        r = httpx.post(f"{api.url}/videos", headers={**owner, "Upload-Length": str(len(data))}, timeout=30)
        loc = api.url + r.headers["Location"]
        first: dict[str, httpx.Response] = {}
        sender = threading.Thread(target=lambda: first.setdefault("r", httpx.patch(
            loc, content=slow_body(), headers={**owner, **PATCH_HEADERS, "Upload-Offset": "0"}, timeout=60)))
        sender.start()
        assert started.wait(30)
        locks = api.services.upload_locks
        wait_for(lambda: (lambda lock: lock is not None and lock.locked())(locks.get(r.json()["video_id"])),
                 "the running PATCH to hold the upload", 30)
        second = httpx.patch(loc, content=data, headers={**owner, **PATCH_HEADERS, "Upload-Offset": "0"}, timeout=30)
        assert second.status_code == 423, second.text
        assert second.headers["Tus-Resumable"] == "1.0.0"
        release.set()
        sender.join(60)
        assert first["r"].status_code == 204 and first["r"].headers["Upload-Offset"] == str(len(data))
    [event] = upload_records(config, r.json()["video_id"])
    assert event["sha256"] == hashlib.sha256(data).hexdigest()
