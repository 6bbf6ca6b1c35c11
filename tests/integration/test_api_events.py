"""POST /v1/events against the real broker: what a 202 promises is on the topics, exactly once.

Records are matched by event_id (fresh UUIDs per test), so other runs' records on
the shared topics do not matter. "Nothing else was produced" is proven with a
marker: all events of a test share one video_id, hence one partition; a marker
event posted afterwards with the same video_id lands after them on that
partition, so once the marker has been consumed, anything of the test that
was produced has been consumed too. Every wait is a condition with a deadline.

These tests post as a server-side producer (a token with the ``events:write``
scope), so no playback session binds the events;
tests/security/test_event_trust.py covers the player's path.
"""
from __future__ import annotations

import collections
import gzip
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from framelog.api import events as ev
from framelog.api.app import assemble
from framelog.clients.credentials import bearer
from framelog.processors.identity import EVENTS_WRITE, Keyring, mint_token
from framelog.streams.admin import create_topics
from framelog.streams.consumer import DecodedRecord, EventConsumer
from framelog.streams.topics import PLAYBACK_EVENTS, QUALITY_SWITCHES, topic_spec
from framelog_client.events import AnalyticsClient

pytestmark = pytest.mark.integration

DEADLINE = 60.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE,
             step: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        if step is not None:
            step()
        else:
            time.sleep(0.02)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_app(config) -> FastAPI:
    return assemble(config, [ev.router], warm=("sender",))


def producer_headers(config) -> dict[str, str]:
    return bearer(mint_token(config.auth, Keyring(config.auth, config.stack.state_dir),
                             "it-producer", scopes=[EVENTS_WRITE]))


class Collector:
    """Every record of the two playback topics, by event_id, as consumed so far."""

    def __init__(self, consumer: EventConsumer):
        self.consumer = consumer
        self.by_id: dict[str, list[DecodedRecord]] = collections.defaultdict(list)

    def poll(self) -> None:
        for rec in self.consumer.poll_batch(5000, 0.5):
            self.by_id[rec.value["event_id"]].append(rec)

    def wait_for_ids(self, ids, timeout: float = DEADLINE) -> dict[str, list[DecodedRecord]]:
        ids = list(ids)
        wait_for(lambda: all(i in self.by_id for i in ids), f"{len(ids)} event(s) on the topics", timeout, self.poll)
        return {i: self.by_id[i] for i in ids}


@pytest.fixture(scope="module")
def collector(stack, config):
    create_topics(config.streams, [topic_spec(PLAYBACK_EVENTS, config.topics),
                                   topic_spec(QUALITY_SWITCHES, config.topics)])
    consumer = EventConsumer(config.streams, f"it-api-events-{uuid.uuid4().hex[:8]}",
                             [PLAYBACK_EVENTS, QUALITY_SWITCHES])
    try:
        yield Collector(consumer)
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def client(stack, config):
    with TestClient(make_app(config), headers=producer_headers(config)) as c:   # the lifespan closes the producer
        yield c


def video() -> str:
    return f"vid_{uuid.uuid4().hex[:12]}"


def pb(video_id: str, type_: str = "progress", **extra) -> dict:
    e = {"type": type_, "event_id": str(uuid.uuid4()), "session_id": "sess-it", "viewer_id": "viewer-it",
         "video_id": video_id, "client_time": now_ms() - 2000, "position_seconds": 3.5,
         "watch_time_delta_seconds": 1.5}
    e.update(extra)
    return e


def qs(video_id: str, **extra) -> dict:
    e = {"type": "quality_switch", "event_id": str(uuid.uuid4()), "session_id": "sess-it", "viewer_id": "viewer-it",
         "video_id": video_id, "timestamp": now_ms() - 1000, "from_quality": "480p", "to_quality": "720p",
         "bandwidth": 3_200_000.5, "buffer_level": 9.5, "reason": "bandwidth"}
    e.update(extra)
    return e


def post_marker(client: TestClient, collector: Collector, video_id: str) -> None:
    """Post one more event for ``video_id`` and wait for it: everything before it on that partition is consumed."""
    marker = pb(video_id, "pause")
    assert client.post("/v1/events", json=[marker]).status_code == 202
    collector.wait_for_ids([marker["event_id"]])


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


# ------------------------------------------------------------------ the happy path

def test_mixed_batch_lands_on_both_topics_exactly_once(client, collector):
    vid = video()
    events = [pb(vid, "view_start", position_seconds=0), pb(vid, "video_view"), pb(vid, "progress"),
              qs(vid), pb(vid, "rebuffer_start"), pb(vid, "rebuffer_end"), qs(vid, reason="low_buffer"),
              pb(vid, "seek", position_seconds=40), pb(vid, "error"), pb(vid, "share"), pb(vid, "video_like"),
              pb(vid, "ended", position_seconds=60, country="US")]
    def ingested(topic: str) -> float:
        return REGISTRY.get_sample_value("framelog_events_ingested_total", {"topic": topic}) or 0

    counted = ingested(PLAYBACK_EVENTS), ingested(QUALITY_SWITCHES)
    before = now_ms()
    r = client.post("/v1/events", json={"events": events}, headers={"X-Viewer-Country": "DE"})
    after = now_ms()
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": len(events)}
    assert (ingested(PLAYBACK_EVENTS) - counted[0], ingested(QUALITY_SWITCHES) - counted[1]) == (10, 2)

    got = collector.wait_for_ids(e["event_id"] for e in events)
    post_marker(client, collector, vid)
    for e in events:
        recs = got[e["event_id"]]
        assert len(recs) == 1, f"{e['type']} produced {len(recs)} times"
        rec = recs[0]
        v = rec.value
        assert rec.key == vid and v["video_id"] == vid
        if e["type"] == "quality_switch":
            assert rec.topic == QUALITY_SWITCHES and rec.name == "QualitySwitch"
            assert (v["from_quality"], v["to_quality"], v["bandwidth"]) == ("480p", "720p", 3_200_000)
            assert v["reason"] == e["reason"] and ms(v["client_time"]) == e["timestamp"]
        else:
            assert rec.topic == PLAYBACK_EVENTS and rec.name == "PlaybackEvent"
            assert v["type"] == {"video_like": "like"}.get(e["type"], e["type"])
            assert v["country"] is None       # neither the body's "US" nor an untrusted peer's header
            assert before <= ms(v["ingest_time"]) <= after
            assert ms(v["client_time"]) == e["client_time"] == ms(v["event_time"])
            assert v["position_seconds"] == e["position_seconds"]
    # nothing of this video but the batch and the marker
    mine = [i for i, recs in collector.by_id.items() if recs[0].value["video_id"] == vid]
    assert len(mine) == len(events) + 1


def test_gzip_body(client, collector):
    vid = video()
    events = [pb(vid, "view_start"), qs(vid), pb(vid, "progress")]
    body = gzip.compress(json.dumps({"events": events}).encode())
    r = client.post("/v1/events", content=body, headers={"Content-Type": "application/json",
                                                         "Content-Encoding": "gzip"})
    assert r.status_code == 202, r.text
    got = collector.wait_for_ids(e["event_id"] for e in events)
    assert {recs[0].topic for recs in got.values()} == {PLAYBACK_EVENTS, QUALITY_SWITCHES}


def test_send_beacon_text_plain_and_headerless_gzip(client, collector):
    vid = video()
    plain = [pb(vid, "pause"), pb(vid, "progress")]
    r = client.post("/v1/events", content=json.dumps(plain).encode(),      # what sendBeacon(url, string) sends
                    headers={"Content-Type": "text/plain;charset=UTF-8", "X-Viewer-Country": "jp"})
    assert r.status_code == 202, r.text
    blob = [pb(vid, "ended")]
    r = client.post("/v1/events", content=gzip.compress(json.dumps(blob).encode()))   # a gzip Blob, no headers
    assert r.status_code == 202, r.text
    got = collector.wait_for_ids(e["event_id"] for e in plain + blob)
    assert all(recs[0].value["country"] is None for recs in got.values())    # "jp" is not a valid country code


def test_future_client_clock_is_clamped(client, collector):
    vid = video()
    e = pb(vid, "progress", client_time=now_ms() + 3_600_000)
    assert client.post("/v1/events", json=[e]).status_code == 202
    v = collector.wait_for_ids([e["event_id"]])[e["event_id"]][0].value
    assert ms(v["client_time"]) == e["client_time"]
    assert v["event_time"] == v["ingest_time"]


# ------------------------------------------------------------------ refusals produce nothing

def test_bad_event_in_the_middle_refuses_the_whole_batch(client, collector):
    vid = video()
    events = [pb(vid, "view_start"), qs(vid), pb(vid, "progress", position_seconds=-4), pb(vid, "pause")]
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 400
    body = r.json()
    error = body["error"]
    assert (error["event_index"], error["field"], error["code"]) == (2, "position_seconds", "invalid_field")
    assert "position_seconds" in error["message"]
    post_marker(client, collector, vid)
    assert not any(e["event_id"] in collector.by_id for e in events)

    bad_type = [pb(vid), dict(pb(vid), type="teleport")]
    r = client.post("/v1/events", json=bad_type)
    assert (r.status_code, r.json()["error"]["event_index"], r.json()["error"]["field"]) == (400, 1, "type")
    bad_id = [pb(vid), qs(vid), qs(vid, event_id="1234")]
    r = client.post("/v1/events", json=bad_id)
    assert (r.status_code, r.json()["error"]["event_index"], r.json()["error"]["field"]) == (400, 2, "event_id")
    post_marker(client, collector, vid)
    assert not any(e["event_id"] in collector.by_id for e in bad_type + bad_id)


def test_resent_batch_keeps_event_ids_and_times(client, collector):
    """A client retry of the same events produces identical (event_id, event_time): the sink counts them once."""
    vid = video()
    events = [pb(vid, "progress"), qs(vid)]
    for _ in range(2):
        assert client.post("/v1/events", json=events).status_code == 202
    post_marker(client, collector, vid)
    for e in events:
        recs = collector.by_id[e["event_id"]]
        assert len(recs) == 2
        assert recs[0].value["event_time"] == recs[1].value["event_time"]


# ------------------------------------------------------------------ the Python client

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_retries_until_the_server_is_up_and_delivers_each_event_once(stack, config, client, collector):
    port = free_port()
    analytics = AnalyticsClient(f"http://127.0.0.1:{port}", batch_size=10, flush_interval=0.05, max_retries=60,
                                backoff_base=0.05, backoff_max=0.5, headers=producer_headers(config))
    vid = video()
    ids = [analytics.track({k: v for k, v in pb(vid, "progress", position_seconds=float(i)).items()
                            if k != "event_id"}) for i in range(15)]
    ids += [analytics.track(qs(vid)) for _ in range(5)]
    wait_for(lambda: analytics.stats.transport_errors >= 2, "the client to fail to connect")
    assert analytics.stats.sent == 0

    server = uvicorn.Server(uvicorn.Config(make_app(config), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert analytics.flush(timeout=DEADLINE), "client did not drain"
        assert analytics.stats.sent == 20 and analytics.stats.dropped == 0
        assert analytics.stats.retries >= 2
    finally:
        analytics.close()
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()

    collector.wait_for_ids(ids)
    post_marker(client, collector, vid)
    counts = collections.Counter({i: len(collector.by_id[i]) for i in ids})
    assert set(counts.values()) == {1}, counts
    assert len(set(ids)) == 20
