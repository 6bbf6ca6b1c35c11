"""Playback events are believed only as far as the playback session says (issue 11, point 3).

Against the real stack and the API process: a private video goes through the
pipeline; its owner's ``GET /v1/stream`` issues the one session a viewer gets.
Events without that session, with a forged, expired or another video's one,
are refused; 500 made-up ``view_start`` events with ``X-Viewer-Country: AQ``
leave the video's views in ClickHouse at the one the stream API recorded;
the country header is honoured from a trusted proxy only; the rate limits
answer 429; a 1 MiB body of tiny gzip members is refused at once while
``/healthz`` stays fast; a renewal re-checks access. Waits are conditions with
deadlines.
"""
from __future__ import annotations

import dataclasses
import gzip
import statistics
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framelog.api import access, events
from framelog.api import stream as stream_api
from framelog.api.app import assemble
from framelog.clients.credentials import bearer
from framelog.core.config import get_config
from framelog.processors.identity import ANALYTICS_READ, VIDEOS_WRITE, Keyring, mint_token
from framelog.processors.playback_session import issue_session, verify_session
from framelog.processors.tokens import load_or_create_secret
from framelog.stack.services import ApiService, WorkerService
from framelog_client.upload import upload_resumable
from tests.integration.support import running, wait_for
from tests.media.support import clips

pytestmark = pytest.mark.integration

PIPELINE_DEADLINE = 420.0
ANALYTICS_DEADLINE = 60.0
OWNER = "trust-owner"
CLIP = {"width": 640, "height": 360, "duration": 6}
HEALTHZ_BUDGET = 0.2          # seconds: /healthz while gzip bombs arrive (issue 11)


@pytest.fixture(scope="module")
def api(stack, config) -> str:
    with running(ApiService(config), timeout=120) as service:
        yield service.address


@pytest.fixture(scope="module")
def worker(stack, config):
    with running(WorkerService(config), timeout=300) as service:
        yield service


@pytest.fixture(scope="module")
def owner(config, secret) -> dict[str, str]:
    return bearer(mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), OWNER, scopes=[VIDEOS_WRITE]))


@pytest.fixture(scope="module")
def video_id(api, worker, owner, tmp_path_factory) -> str:
    """A private video, processed; its owner may stream it."""
    clip = clips.video(tmp_path_factory.mktemp("clip") / "trust.mp4", **CLIP)
    vid = upload_resumable(api, clip, token=owner["Authorization"].split(" ", 1)[1], visibility="private")

    def state() -> str | None:
        r = httpx.get(f"{api}/videos/{vid}", headers=owner, timeout=10)
        return r.json().get("state") if r.status_code == 200 else None

    final = wait_for(lambda: state() in ("ready", "failed") and state(), f"video {vid} processed", PIPELINE_DEADLINE,
                     step=1.0)
    assert final == "ready"
    wait_for(lambda: httpx.get(f"{api}/v1/stream", params={"video_id": vid}, headers=owner,
                               timeout=10).status_code == 200, "the stream API to know the video", 60)
    return vid


def stream(api: str, video_id: str, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{api}/v1/stream", params={"video_id": video_id, **params}, headers=headers, timeout=15)
    assert r.status_code == 200, r.text
    return r.json()


def event(video_id: str, type_: str = "progress", **extra: Any) -> dict[str, Any]:
    return {"type": type_, "event_id": str(uuid.uuid4()), "video_id": video_id,
            "client_time": time.time_ns() // 1_000_000, "position_seconds": 1.0, **extra}


def post(api: str, events: list[dict], session: str | None = None, **headers: str) -> httpx.Response:
    if session is not None:
        headers["X-Playback-Session"] = session
    return httpx.post(f"{api}/v1/events", json={"events": events}, headers=headers, timeout=15)


def sql(api: str, statement: str, **parameters: Any) -> list[list[Any]]:
    analyst = bearer(mint_token(get_config().auth, Keyring(get_config().auth, get_config().stack.state_dir),
                                "trust-analyst", scopes=[ANALYTICS_READ]))
    r = httpx.post(f"{api}/v1/sql", json={"sql": statement, "parameters": parameters}, headers=analyst, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["rows"]


# ------------------------------------------------------------------ sessions

def test_events_need_the_session_the_stream_api_issued(config, api, video_id, owner, secret):
    answer = stream(api, video_id, owner)
    token = answer["session"]
    session = verify_session(token, secret=secret, now=time.time(), video_id=video_id)
    assert (session.session_id, session.viewer_id) == (answer["analytics"]["session_id"], OWNER)

    r = post(api, [event(video_id)])                                       # absent
    assert (r.status_code, r.json()["error"]["code"]) == (401, "session_required"), r.text
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    r = post(api, [event(video_id)], forged)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "session_invalid"), r.text
    never_issued, _ = issue_session(secret=b"another secret of 32 bytes......", now=time.time(), ttl=600,
                                    session_id="made-up", video_id=video_id, viewer_id="someone")
    assert post(api, [event(video_id)], never_issued).json()["error"]["code"] == "session_invalid"
    expired, _ = issue_session(session, secret=secret, now=time.time() - 7200, ttl=60)
    r = post(api, [event(video_id)], expired)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "session_expired"), r.text

    other = f"vid_{uuid.uuid4().hex[:12]}"                                  # another video, same session
    r = post(api, [event(video_id), event(other)], token)
    assert r.status_code == 403 and r.json()["error"]["code"] == "session_wrong_video"
    assert (r.json()["error"]["event_index"], r.json()["error"]["field"]) == (1, "video_id")
    r = post(api, [event(video_id, viewer_id="someone-else")], token)
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["event_index"]) == (400, "session_mismatch", 0)
    r = post(api, [event(video_id), event(video_id, "view_start")], token)   # the stream API recorded it
    error = r.json()["error"]
    assert (r.status_code, error["code"], error["event_index"]) == (400, "view_already_recorded", 1)
    # the body's "session" field (what sendBeacon sends) works like the header; ids come from the session
    r = httpx.post(f"{api}/v1/events", json={"session": token, "events": [event(video_id, "pause")]}, timeout=15)
    assert r.status_code == 202, r.text


def test_made_up_view_starts_are_not_counted(config, api, video_id, owner, secret):
    """The attack of issue 11: 500 view_starts for someone else's private video, made-up viewers, country AQ."""
    made_up = [event(video_id, "view_start", session_id=f"s-{i}", viewer_id=f"v-{i}") for i in range(500)]
    for chunk in (made_up[:250], made_up[250:]):
        r = post(api, chunk, **{"X-Viewer-Country": "AQ"})
        assert r.status_code == 401, r.text
    # with a real session of the owner's the made-up viewers and a second view are refused just the same
    answer = stream(api, video_id, owner, country="AQ")            # country= steers routing only
    token, sid = answer["session"], answer["analytics"]["session_id"]
    assert answer["analytics"]["country"] is None                 # the loopback peer is no trusted proxy
    r = post(api, made_up[:10], token, **{"X-Viewer-Country": "AQ"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "session_mismatch"
    r = post(api, [event(video_id, "view_start")], token, **{"X-Viewer-Country": "AQ"})
    assert r.json()["error"]["code"] == "view_already_recorded"
    marker = event(video_id, "pause")                               # lands after everything above
    assert post(api, [marker], token, **{"X-Viewer-Country": "AQ"}).status_code == 202

    def marker_row() -> list:
        return sql(api, "SELECT country, viewer_id FROM playback_events WHERE video_id = {v:String} "
                        "AND event_id = {e:UUID}", v=video_id, e=marker["event_id"])

    assert wait_for(marker_row, "the marker in ClickHouse", ANALYTICS_DEADLINE) == [[None, OWNER]]
    views = sql(api, "SELECT count(), uniqExact(viewer_id), countIf(country = 'AQ') FROM playback_events "
                     "WHERE video_id = {v:String} AND type IN ('view_start', 'video_view')", v=video_id)[0]
    opened = sql(api, "SELECT count() FROM playback_events WHERE video_id = {v:String} AND type = 'view_start' "
                      "AND session_id = {s:String}", v=video_id, s=sid)[0][0]
    assert opened == 1                                             # the stream API's own view_start
    # only the stream API's view_starts (one per GET /v1/stream of the owner so far), one viewer, none from AQ
    count, uniques, from_aq = views
    assert uniques == 1 and from_aq == 0 and count < 10, views


# ------------------------------------------------------------------ trusted proxies and rate limits (in-process app)

def in_process(config, **trust: Any) -> FastAPI:
    """The stream and events API on the real stack with other ``playback_trust`` numbers (the API process keeps
    its own; the analytics sink stays in that process, which owns the engine)."""
    return assemble(dataclasses.replace(config, playback_trust=dataclasses.replace(config.playback_trust, **trust)),
                    [access.router, events.router, stream_api.router])


def beside(running: TestClient, app: FastAPI, address: str) -> TestClient:
    """Another client address on the app ``running`` serves: the same lifespan, so the same Services (one set
    of rate limiters, as in one API process), not a second app instance."""
    other = TestClient(app, client=(address, 40000))
    other.app_state.update(running.app_state)            # the dict its transport hands to every request
    return other


def test_country_is_taken_from_trusted_proxies_only(config, api, video_id, owner):
    app = in_process(config, trusted_proxies=("10.9.0.0/16",))
    headers = {**owner, "X-Viewer-Country": "AQ"}
    with TestClient(app, client=("10.9.0.5", 40000)) as proxy:
        direct = beside(proxy, app, "192.0.2.7")
        wait_for(lambda: proxy.get("/v1/stream", params={"video_id": video_id}, headers=owner).status_code == 200,
                 "the in-process API to know the video", 60)
        via_proxy = proxy.get("/v1/stream", params={"video_id": video_id}, headers=headers).json()
        assert via_proxy["analytics"]["country"] == "AQ"
        secret = load_or_create_secret(config.security, config.stack.state_dir)
        assert verify_session(via_proxy["session"], secret=secret, now=time.time()).country == "AQ"
        spoofed = direct.get("/v1/stream", params={"video_id": video_id}, headers=headers).json()
        assert spoofed["analytics"]["country"] is None
        # events: the session's country, whatever header a direct client adds
        mine = event(video_id, "pause")
        r = direct.post("/v1/events", json={"session": spoofed["session"], "events": [mine]},
                        headers={"X-Viewer-Country": "AQ"})
        assert r.status_code == 202, r.text
        theirs = event(video_id, "pause")
        assert direct.post("/v1/events", json={"session": via_proxy["session"], "events": [theirs]}).status_code == 202

    def rows() -> dict | None:
        got = dict(sql(api, "SELECT toString(event_id), country FROM playback_events WHERE video_id = {v:String} "
                            "AND event_id IN ({a:UUID}, {b:UUID})",
                       v=video_id, a=mine["event_id"], b=theirs["event_id"]))
        return got if len(got) == 2 else None

    rows = wait_for(rows, "both events in ClickHouse", ANALYTICS_DEADLINE)
    assert rows == {mine["event_id"]: None, theirs["event_id"]: "AQ"}


def test_rate_limits_answer_429(config, video_id, owner):
    app = in_process(config, client_rate=0.05, client_burst=4, session_rate=0.05, session_burst=3)
    with TestClient(app, client=("192.0.2.8", 40000)) as a:
        b = beside(a, app, "192.0.2.9")
        answer = wait_for(lambda: (r := a.get("/v1/stream", params={"video_id": video_id}, headers=owner)).status_code
                          == 200 and r.json(), "a stream answer", 60)
        token = answer["session"]
        assert a.post("/v1/events", json={"session": token, "events": [event(video_id)] * 1}).status_code == 202
        codes = [a.post("/v1/events", json=[event(video_id)]).status_code for _ in range(3)]
        assert codes[-1] == 429, codes                        # 4 requests per address, then 429
        r = a.post("/v1/events", json=[event(video_id)])
        assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
        assert a.get("/v1/stream", params={"video_id": video_id}, headers=owner).status_code == 429
        # per session: 3 events, then 429 however many addresses it comes from
        r = b.post("/v1/events", json={"session": token, "events": [event(video_id) for _ in range(3)]})
        assert r.status_code == 429 and r.json()["error"]["code"] == "session_rate_limited", r.text
        assert int(r.headers["Retry-After"]) >= 1


# ------------------------------------------------------------------ a gzip bomb of many members

def many_member_gzip(size: int = 1 << 20) -> bytes:
    member = gzip.compress(b" ", mtime=0)
    return member * (size // len(member))


def test_many_member_gzip_body_is_refused_fast_and_healthz_stays_responsive(api):
    body = many_member_gzip()
    assert len(body) > 1_000_000
    stop = threading.Event()
    health: list[float] = []
    bombs: list[tuple[int, float]] = []

    def probe() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                t = time.perf_counter()
                assert http.get(f"{api}/healthz").status_code == 200
                health.append(time.perf_counter() - t)
                stop.wait(0.02)

    def bomb() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(15):
                t = time.perf_counter()
                r = http.post(f"{api}/v1/events", content=body, headers={"Content-Encoding": "gzip"})
                bombs.append((r.status_code, time.perf_counter() - t))
                assert r.json()["error"]["code"] == "too_many_gzip_members", r.text

    prober = threading.Thread(target=probe)
    prober.start()
    senders = [threading.Thread(target=bomb) for _ in range(6)]
    for s in senders:
        s.start()
    for s in senders:
        s.join(120)
    stop.set()
    prober.join(30)
    assert {code for code, _ in bombs} == {413} and len(bombs) == 90
    per_bomb = [t for _, t in bombs]
    print(f"\n90 many-member gzip bombs (6 senders): median {statistics.median(per_bomb) * 1000:.0f} ms, "
          f"max {max(per_bomb) * 1000:.0f} ms; /healthz x{len(health)}: median "
          f"{statistics.median(health) * 1000:.1f} ms, max {max(health) * 1000:.1f} ms")
    assert max(health) < HEALTHZ_BUDGET, max(health)
    assert statistics.median(per_bomb) < 0.5


# ------------------------------------------------------------------ renewal re-checks access

def test_renewal_rechecks_access(config, api, video_id, owner, secret):
    answer = stream(api, video_id, owner)
    r = httpx.post(f"{api}/v1/stream/renew", json={"session": answer["session"]}, headers=owner, timeout=15)
    assert r.status_code == 200, r.text
    renewed = r.json()
    assert renewed["session_id"] == answer["analytics"]["session_id"] and "analytics" not in renewed
    assert renewed["manifest_url"].split("/hls/")[1] == answer["manifest_url"].split("/hls/")[1]
    assert renewed["expires_at"] - time.time() <= config.security.stream_url_ttl + 1
    # the owner's session needs the owner's token; a forged or another secret's session is refused
    assert httpx.post(f"{api}/v1/stream/renew", json={"session": answer["session"]}, timeout=15).status_code == 403
    forged, _ = issue_session(verify_session(answer["session"], secret=secret, now=time.time()),
                              secret=b"another secret of 32 bytes......", now=time.time(), ttl=60)
    assert httpx.post(f"{api}/v1/stream/renew", json={"session": forged}, headers=owner,
                      timeout=15).status_code == 401
    # the same session opened as an anonymous viewer of a video that is private: refused
    anonymous, _ = issue_session(secret=secret, now=time.time(), ttl=60, session_id="anon-trial",
                                 video_id=video_id, viewer_id="anon-trial")
    r = httpx.post(f"{api}/v1/stream/renew", json={"session": anonymous}, timeout=15)
    assert r.status_code == 403, r.text
