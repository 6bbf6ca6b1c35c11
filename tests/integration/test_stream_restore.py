"""A stream request for a cold rendition restores it (issue 6, point 5), on the real stack.

The real HTTP API (in this process, as in test_api_delivery.py) and the real
tiering worker with time shrunk to seconds (tests/integration/support/tiering_worker.py):
a published public video whose 720p rendition nobody watches goes cold, its
watched 360p rendition stays hot. Asking for 720p answers 409 "restoring" with
Retry-After and puts exactly one RestoreRequest on storage.tier-transitions;
the adaptive stream still plays (360p available, 720p restoring with an
estimate) and asks for nothing more; after the cold tier's restore delay the
worker promotes 720p and the same request plays. Every wait is a condition
with a deadline.
"""
from __future__ import annotations

import math
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from framelog.core import object_keys
from framelog.core.config import Config
from framelog.sinks.object_store import ObjectStore
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from tests.integration.support import TopicRecorder, wait_for
from tests.integration.support.delivery_api import QUALITIES, make_app, publish, stream_of, upload, viewer_tokens
from tests.integration.support.tiering_worker import KEEP_HOT_SESSIONS, RESTORE_DELAY, play

pytestmark = pytest.mark.integration

DEADLINE = 60.0
COLD, WATCHED = QUALITIES                      # 720p: nobody watches it; 360p: watched, stays hot
MAX_RETRY_AFTER = math.ceil(RESTORE_DELAY)


@pytest.fixture(scope="module")
def client(tcfg, tiering_worker):
    with TestClient(make_app(tcfg[0])) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(tcfg) -> dict[str, dict[str, str]]:
    return viewer_tokens(tcfg[0])


@pytest.fixture(scope="module")
def anon(tokens) -> dict[str, str]:
    return tokens["anon"]


@pytest.fixture(scope="module")
def store(tcfg) -> ObjectStore:
    return ObjectStore(tcfg[0].object_storage, tcfg[0].stack.state_dir)


@pytest.fixture(scope="module")
def tier_log(tcfg):
    rec = TopicRecorder(tcfg[0], (topics.TIER_TRANSITIONS,), group_prefix="it-stream-restore").start()
    assert rec.wait_ready(DEADLINE), rec.last_error
    yield rec
    rec.stop()


def public_video(client: TestClient, cfg: Config, tokens, watched: tuple[str, ...]) -> str:
    """A published public video; the ``watched`` renditions get enough sessions to stay hot.

    Played before it is published (unlike ``delivery_api.published``): a watched
    rendition must have its sessions when it turns AGE_SECONDS old.
    """
    vid = upload(client, tokens["alice"], visibility="public")
    with EventProducer(cfg.streams) as producer:
        for rendition in watched:
            play(producer, vid, rendition, KEEP_HOT_SESSIONS)
    publish(cfg, vid)
    wait_for(lambda: stream_of(client, vid, tokens["alice"]).status_code == 200, f"video {vid} to play", DEADLINE)
    return vid


def qualities(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["name"]: q for q in answer.get("qualities", [])}


def storage_classes(store: ObjectStore, vid: str, rendition: str) -> set[str]:
    return {o.get("StorageClass") or "STANDARD" for o in store.objects(object_keys.rendition_prefix(vid, rendition))}


def restore_requests(tier_log: TopicRecorder, vid: str) -> list[dict[str, Any]]:
    """Every RestoreRequest of the video on the log now (caught up first: none seen means none written)."""
    assert tier_log.wait_caught_up(DEADLINE)
    return tier_log.of(vid, "RestoreRequest")


def assert_restoring_409(r, rendition_or_video: str) -> float:
    """A 409 that says "restoring", with a Retry-After no later than the restore delay; returns the estimate."""
    assert r.status_code == 409, r.text
    body = r.json()
    error = body["error"]
    assert error["code"] == "restoring" and error["availability"] == "restoring", body
    assert rendition_or_video in error["message"], body
    assert 1 <= int(r.headers["retry-after"]) <= MAX_RETRY_AFTER, r.headers
    assert 0 <= error["restore_estimate_seconds"] <= RESTORE_DELAY
    assert r.headers["cache-control"] == "no-store"
    return error["restore_estimate_seconds"]


def test_asking_for_a_cold_rendition_restores_only_it_while_the_others_play(tcfg, client, tokens, anon, tier_log,
                                                                            store):
    cfg, _ = tcfg
    vid = public_video(client, cfg, tokens, watched=(WATCHED,))

    cold = tier_log.wait(vid, "TierTransition", lambda v: v["rendition"] == COLD, timeout=DEADLINE)
    assert (cold["from_tier"], cold["to_tier"], cold["rule"]) == ("hot_tier", "cold_tier", "Low usage")
    assert storage_classes(store, vid, COLD) == {"GLACIER"}

    # the API's tier view has folded the move: listing the cold rendition next to a playable one asks for nothing
    listed = wait_for(lambda: (lambda s: s if qualities(s).get(COLD, {}).get("availability") != "available" else None)(
        stream_of(client, vid, anon).json()), f"the stream API to see {COLD} cold", DEADLINE)
    assert qualities(listed)[WATCHED]["availability"] == "available"
    assert restore_requests(tier_log, vid) == []

    # asking for the cold rendition: 409 restoring, one RestoreRequest for that rendition only
    asked = time.monotonic()
    first = assert_restoring_409(stream_of(client, vid, anon, quality=COLD), COLD)
    [request] = restore_requests(tier_log, vid)
    assert (request["rendition"], request["to_tier"], request["reason"]) == (
        COLD, cfg.tiering_restore_tier, "playback_requested")

    # the adaptive stream plays meanwhile: the cold one listed as restoring, with an estimate; nothing more asked
    r = stream_of(client, vid, anon)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["stream_url"] == s["manifest_url"] and s["stream_url"].endswith(f"/hls/{vid}/master.m3u8")
    q = qualities(s)
    assert q[COLD]["availability"] == "restoring" and 0 <= q[COLD]["restore_estimate_seconds"] <= first
    assert q[WATCHED]["availability"] == "available" and q[WATCHED]["restore_estimate_seconds"] is None
    assert stream_of(client, vid, anon, quality=WATCHED).status_code == 200
    assert_restoring_409(stream_of(client, vid, anon, quality=COLD), COLD)        # asked again: no second request
    assert len(restore_requests(tier_log, vid)) == 1

    # after the restore delay the worker promotes it, and the same request plays
    def played() -> Any:
        r = stream_of(client, vid, anon, quality=COLD)
        if r.status_code == 409:
            assert_restoring_409(r, COLD)
            return None
        return r
    r = wait_for(played, f"{COLD} to be restored", DEADLINE)
    assert time.monotonic() - asked >= first - 0.5, "played before the restore delay"
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["stream_url"].endswith(f"/hls/{vid}/{COLD}/playlist.m3u8")
    assert {n: (x["availability"], x["restore_estimate_seconds"]) for n, x in qualities(s).items()} == {
        COLD: ("available", None), WATCHED: ("available", None)}
    restored = tier_log.wait(vid, "TierTransition", lambda v: v["rule"] == "restore")
    assert (restored["rendition"], restored["from_tier"], restored["to_tier"]) == (COLD, "cold_tier", "hot_tier")
    assert storage_classes(store, vid, COLD) == {"STANDARD"}
    assert len(restore_requests(tier_log, vid)) == 1
    assert {t["rendition"] for t in tier_log.of(vid, "TierTransition")} == {COLD}      # the watched one never moved


def test_an_adaptive_request_with_nothing_playable_restores_every_rendition(tcfg, client, tokens, anon, tier_log,
                                                                           store):
    cfg, _ = tcfg
    vid = public_video(client, cfg, tokens, watched=())

    def refused() -> Any:          # 200 while a rendition is still hot (or not yet seen cold): that asks for nothing
        r = stream_of(client, vid, anon)
        return r if r.status_code == 409 else None
    r = wait_for(refused, "the adaptive stream to be refused while every rendition is cold", DEADLINE)
    asked = time.monotonic()
    first = assert_restoring_409(r, vid)
    requests = restore_requests(tier_log, vid)
    assert sorted(x["rendition"] for x in requests) == sorted(QUALITIES)
    assert_restoring_409(stream_of(client, vid, anon), vid)
    assert len(restore_requests(tier_log, vid)) == len(QUALITIES)

    def restored() -> Any:
        r = stream_of(client, vid, anon)
        s = r.json() if r.status_code == 200 else {}
        return s if s and all(q["availability"] == "available" for q in qualities(s).values()) else None
    wait_for(restored, "every rendition to be restored", DEADLINE)
    assert time.monotonic() - asked >= first - 0.5
    assert {q: storage_classes(store, vid, q) for q in QUALITIES} == {q: {"STANDARD"} for q in QUALITIES}
