"""Webhooks end to end on the real stack: registration API, the ``webhooks`` worker group, a real receiver.

Source events are written to the real topics; the worker (a child process,
``framelog worker --stage webhooks``, on an overlay that lets it reach the
loopback receiver and retries fast) delivers them. The receiver checks every
signature with the ``standardwebhooks`` package, the order per video per
endpoint, that a failing video blocks only itself, that a dead endpoint
blocks nobody, that every attempt is on ``webhooks.deliveries``, replay, and
at-least-once with stable webhook-ids across a kill -9 of the worker.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from framelog.pipeline.webhooks import GROUP_ID
from framelog.processors.identity import Keyring, mint_token
from framelog.schemas.events import new_event
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from tests.integration.support import TopicRecorder, wait_for
from tests.integration.support.webhook_receiver import (
    Receiver,
    WebhookWorkerProcess,
    group_members,
    make_app,
    webhook_overlay,
)

pytestmark = pytest.mark.integration

DEADLINE = 60.0
GOOD = ["upload.completed", "video.processing", "video.ready", "tier.changed", "video.deleted"]
BAD = ["upload.completed", "video.processing", "video.failed"]


@pytest.fixture(scope="module")
def hooks(stack, config, tmp_path_factory):
    """(overlay path, config) with loopback allowed and retries of 200 ms doubling to 1 s, 4 attempts."""
    return webhook_overlay(config, tmp_path_factory.mktemp("webhooks"), retry_backoff_initial="200ms",
                           retry_backoff_max="1s", max_attempts=4, request_timeout="2s")


@pytest.fixture(scope="module")
def api(hooks):
    with TestClient(make_app(hooks[1])) as client:
        yield client


@pytest.fixture
def worker(hooks, tmp_path):
    overlay, cfg = hooks
    wait_for(lambda: group_members(cfg, GROUP_ID) == 0, f"no other member in {GROUP_ID}", DEADLINE, step=0.5)
    proc = WebhookWorkerProcess(cfg, overlay, tmp_path / "webhooks-worker.log")
    proc.start()
    wait_for(lambda: group_members(cfg, GROUP_ID) > 0, "the webhooks worker joined its group", DEADLINE, step=0.2)
    yield proc
    proc.stop()


def bearer(cfg, user: str, workspaces: tuple[str, ...] = ()) -> dict[str, str]:
    token = mint_token(cfg.auth, Keyring(cfg.auth, cfg.stack.state_dir),
                       user, workspaces=workspaces, scopes=["videos:write"])
    return {"Authorization": f"Bearer {token}"}


def register(api: TestClient, cfg, owner: str, url: str, **extra: Any) -> dict[str, Any]:
    r = api.post("/v1/webhooks", json={"url": url, **extra}, headers=bearer(cfg, owner))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secret"].startswith("whsec_") and body["id"].startswith("ep_")
    return body


def produce_video(producer: EventProducer, video_id: str, owner: str, *, fails: bool, t0: datetime) -> None:
    """The source events of one video, as the platform writes them, one millisecond apart."""
    def at(i: int) -> datetime:
        return t0 + timedelta(milliseconds=i)

    events = [
        (topics.ACCESS, "AccessPolicy", dict(owner_id=owner, visibility="private", changed_by=owner)),
        (topics.UPLOADS, "UploadCompleted", dict(object_key=f"uploads/{video_id}/original", size_bytes=1234,
                                                 sha256="0" * 64, content_type="video/mp4", owner_id=owner)),
        (topics.STAGE_TRANSITIONS, "StageTransition", dict(job_id=f"j-{video_id}", stage="validation",
                                                           state="queued", attempt=1)),
    ]
    if fails:
        events.append((topics.STAGE_TRANSITIONS, "StageTransition", dict(
            job_id=f"j-{video_id}", stage="transcoding", state="failed", attempt=2, error_type="invalid_media",
            error_message="no video stream")))
    else:
        events += [
            (topics.ASSETS, "AssetPublished", dict(job_id=f"j-{video_id}", renditions=[dict(
                name="720p", width=1280, height=720, bandwidth=2_800_000, average_bandwidth=2_500_000,
                codecs="avc1.64001f,mp4a.40.2", frame_rate=25.0, playlist_key=f"hls/{video_id}/720p/index.m3u8",
                segment_count=1, size_bytes=1000)],
                master_playlist_key=f"hls/{video_id}/master.m3u8", duration_seconds=10.0)),
            (topics.TIER_TRANSITIONS, "TierTransition", dict(rendition="720p", from_tier="hot_tier",
                                                             to_tier="warm_tier", rule="Moderate usage",
                                                             age_days=31.0, access_count=3)),
            (topics.UPLOADS, "VideoDeleted", dict(owner_id=owner, requested_by=owner, reason="test")),
        ]
    for i, (topic, name, fields) in enumerate(events):
        producer.send(topic, name, new_event(name, video_id=video_id, event_time=at(i), **fields))
    producer.flush()


def first_seen(requests) -> list:
    """Requests in arrival order, each webhook-id kept once (its first delivery)."""
    seen, out = set(), []
    for r in sorted(requests, key=lambda r: r.at):
        if r.message_id not in seen:
            seen.add(r.message_id)
            out.append(r)
    return out


def types_of(requests, video_id: str) -> list[str]:
    return [r.json["type"] for r in first_seen(requests) if r.json["data"]["video_id"] == video_id]


def test_signed_ordered_retried_recorded_and_replayed(api, hooks, worker):
    _, cfg = hooks
    owner = f"alice-{uuid.uuid4().hex[:8]}"
    stuck_video = f"wh-stuck-{uuid.uuid4().hex[:8]}"
    failures: dict[str, int] = {}

    def behaviour(path: str, headers: dict[str, str], body: bytes) -> int:
        # /flaky refuses the stuck video's first message twice: that video waits, the others do not
        if path == "/flaky" and stuck_video.encode() in body and b"upload.completed" in body:
            failures[headers["webhook-id"]] = failures.get(headers["webhook-id"], 0) + 1
            if failures[headers["webhook-id"]] <= 2:
                return 503
        return 200

    with Receiver(behaviour) as rx:
        ok = register(api, cfg, owner, f"{rx.base}/ok", description="all events")
        flaky = register(api, cfg, owner, f"{rx.base}/flaky")
        dead = register(api, cfg, owner, "http://127.0.0.1:9/dead")          # nothing listens on port 9
        only_ready = register(api, cfg, owner, f"{rx.base}/ready", event_types=["video.ready"])
        listed = api.get("/v1/webhooks", headers=bearer(cfg, owner)).json()["endpoints"]
        assert {e["id"] for e in listed} == {ok["id"], flaky["id"], dead["id"], only_ready["id"]}
        assert all("secret" not in e for e in listed)
        assert api.get(f"/v1/webhooks/{ok['id']}", headers=bearer(cfg, "mallory")).status_code == 404
        assert api.get("/v1/webhooks").status_code == 401

        videos = {stuck_video: False, f"wh-good-{uuid.uuid4().hex[:8]}": False,
                  f"wh-bad-{uuid.uuid4().hex[:8]}": True}
        with EventProducer(cfg.streams) as producer:
            t0 = datetime.now(UTC)
            for i, (vid, fails) in enumerate(videos.items()):
                produce_video(producer, vid, owner, fails=fails, t0=t0 + timedelta(milliseconds=100 * i))
        expected = {vid: BAD if fails else GOOD for vid, fails in videos.items()}
        total = sum(len(v) for v in expected.values())

        wait_for(lambda: len(first_seen(rx.at("/ok", ok_only=True))) >= total, "every message at /ok", DEADLINE)
        wait_for(lambda: len(first_seen(rx.at("/flaky", ok_only=True))) >= total, "every message at /flaky", DEADLINE)
        wait_for(lambda: len(rx.at("/ready")) >= 2, "the video.ready messages at /ready", DEADLINE)

        secrets = {"/ok": ok["secret"], "/flaky": flaky["secret"], "/ready": only_ready["secret"]}
        for r in rx.requests:                                       # every request is signed per the spec
            assert Webhook(secrets[r.path]).verify(r.body, r.headers)["type"] == r.json["type"]
            assert r.headers["content-type"] == "application/json"
        for path in ("/ok", "/flaky"):
            ok_requests = rx.at(path, ok_only=True)
            for vid, types in expected.items():
                assert types_of(ok_requests, vid) == types, (path, vid)
        assert {r.json["type"] for r in rx.at("/ready")} == {"video.ready"}

        # the stuck video waited at /flaky (2 refusals, 3rd attempt), and the other videos did not wait for it
        stuck = [r for r in rx.at("/flaky") if r.json["data"]["video_id"] == stuck_video]
        assert [r.status for r in stuck[:3]] == [503, 503, 200]
        assert len({r.message_id for r in stuck[:3]}) == 1
        others_done = max(r.at for r in rx.at("/flaky", ok_only=True) if r.json["data"]["video_id"] != stuck_video
                          and r.json["type"] == "upload.completed")
        assert others_done < stuck[2].at

        # every step is on the log: attempts with status codes and latency, the dead endpoint's errors
        rec = TopicRecorder(cfg, (topics.WEBHOOK_DELIVERIES,), group_prefix="it-webhooks").start()
        try:
            assert rec.wait_ready(DEADLINE)
            steps = wait_for(lambda: [s for s in rec.of(stuck_video, "WebhookDelivery")
                                      if s["endpoint_id"] == flaky["id"] and s["event_type"] == "upload.completed"
                                      and s["outcome"] in ("failed", "delivered")] if len(
                [s for s in rec.of(stuck_video, "WebhookDelivery") if s["endpoint_id"] == flaky["id"]
                 and s["outcome"] == "delivered" and s["event_type"] == "upload.completed"]) else None,
                "the stuck message's attempts on webhooks.deliveries", DEADLINE)
            assert [(s["attempt"], s["outcome"], s["status_code"]) for s in steps] == \
                [(1, "failed", 503), (2, "failed", 503), (3, "delivered", 200)]
            assert all(s["latency_ms"] is not None and s["next_attempt_at"] for s in steps[:2])
            dead_steps = wait_for(lambda: [s for s in rec.of(stuck_video, "WebhookDelivery")
                                           if s["endpoint_id"] == dead["id"] and s["outcome"] == "failed"],
                                  "failed attempts at the dead endpoint", DEADLINE)
            assert dead_steps[0]["status_code"] is None and dead_steps[0]["error"]
        finally:
            rec.stop()

        deliveries = api.get(f"/v1/webhooks/{flaky['id']}/deliveries", headers=bearer(cfg, owner)).json()
        assert {"delivered", "failed"} <= {d["outcome"] for d in deliveries["deliveries"]}

        # replay: the same messages again, same webhook-ids, in order
        before = {r.message_id for r in rx.at("/ok", ok_only=True)}
        n = len(rx.at("/ok"))
        r = api.post(f"/v1/webhooks/{ok['id']}/replay", json={"since": t0.isoformat()}, headers=bearer(cfg, owner))
        assert r.status_code == 200, r.text
        assert r.json()["delivered"] == total
        again = rx.at("/ok")[n:]
        assert {x.message_id for x in again} == before
        for vid, types in expected.items():
            assert types_of(again, vid) == types

        assert api.delete(f"/v1/webhooks/{dead['id']}", headers=bearer(cfg, "mallory")).status_code == 404
        for e in (ok, flaky, dead, only_ready):
            assert api.delete(f"/v1/webhooks/{e['id']}", headers=bearer(cfg, owner)).status_code == 204
        assert api.get(f"/v1/webhooks/{ok['id']}", headers=bearer(cfg, owner)).status_code == 404


def test_at_least_once_across_kill_9(api, hooks, worker):
    _, cfg = hooks
    owner = f"bob-{uuid.uuid4().hex[:8]}"
    with Receiver(delay=0.05) as rx:
        endpoint = register(api, cfg, owner, f"{rx.base}/hook")
        videos = [f"wh-kill-{uuid.uuid4().hex[:8]}-{i}" for i in range(24)]
        with EventProducer(cfg.streams) as producer:
            t0 = datetime.now(UTC)
            for i, vid in enumerate(videos):
                produce_video(producer, vid, owner, fails=False, t0=t0 + timedelta(milliseconds=10 * i))
        total = len(videos) * len(GOOD)
        wait_for(lambda: len(rx.at("/hook")) >= total // 4, "a quarter of the messages before the kill", DEADLINE)
        worker.kill9()
        got_before = len(first_seen(rx.at("/hook")))
        assert got_before < total, "the worker finished before it could be killed"
        worker.start()
        wait_for(lambda: len(first_seen(rx.at("/hook"))) >= total, "every message after the restart", 2 * DEADLINE)

        requests = rx.at("/hook")
        verifier = Webhook(endpoint["secret"])
        ids_per_event: dict[tuple[str, str], set[str]] = {}
        for r in requests:
            body = verifier.verify(r.body, r.headers)
            ids_per_event.setdefault((body["data"]["video_id"], body["type"]), set()).add(r.message_id)
        assert len(ids_per_event) == total
        assert all(len(ids) == 1 for ids in ids_per_event.values()), "a duplicate carried another webhook-id"
        for vid in videos:
            assert types_of(requests, vid) == GOOD, vid
        api.delete(f"/v1/webhooks/{endpoint['id']}", headers=bearer(cfg, owner))
