"""Deleting a video under compliance retention: refused, unless an operator overrides it on the record.

A published video whose 720p rendition entered the deep-archive tier (retention
lock, 2555 days) cannot be deleted by its owner: 409 naming the tier and the
date. An owner cannot override; an operator (``ops`` scope) can, and the
override is on the log in the VideoDeleted event.
"""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from framelog.processors.identity import Keyring, mint_token
from framelog.schemas.events import new_event
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from tests.integration.support import TopicRecorder, wait_for
from tests.integration.support.delivery_api import make_app, published, viewer_tokens

pytestmark = pytest.mark.integration

DEADLINE = 60.0


@pytest.fixture(scope="module")
def client(stack, config):
    with TestClient(make_app(config)) as c:
        yield c


@pytest.fixture(scope="module")
def recorder(stack, config):
    rec = TopicRecorder(config, (topics.UPLOADS,), group_prefix="it-retention-deletion").start()
    assert rec.wait_ready(DEADLINE), rec.last_error
    yield rec
    rec.stop()


def test_a_video_in_compliance_retention_is_deleted_only_by_an_operators_recorded_override(client, config,
                                                                                          recorder):
    tokens = viewer_tokens(config)
    vid = published(client, config, tokens, "public")
    with EventProducer(config.streams) as producer:
        producer.send(topics.TIER_TRANSITIONS, "TierTransition", new_event(
            "TierTransition", video_id=vid, rendition="720p", object_keys=[f"hls/{vid}/720p/seg_000.ts"],
            object_count=1, size_bytes=188, from_tier="hot_tier", to_tier="deep_archive_tier",
            storage_class="DEEP_ARCHIVE", rule="Archive", age_days=400.0, access_count=0), key=vid)

    def archived() -> bool:          # tiering's view has the transition (the stream API shows it)
        s = client.get("/v1/stream", params={"video_id": vid}, headers=tokens["alice"]).json()
        return {q["name"]: q for q in s.get("qualities", [])}.get("720p", {}).get("availability") == "archived"
    wait_for(archived, "the 720p rendition to show as archived", DEADLINE)

    refused = client.delete(f"/videos/{vid}", headers=tokens["alice"])
    assert refused.status_code == 409, refused.text
    assert "compliance retention in deep_archive_tier until" in refused.json()["error"]["message"]
    assert "720p" in refused.json()["error"]["message"]
    r = client.delete(f"/videos/{vid}", params={"retention_override": "legal hold lifted"},
                      headers=tokens["alice"])
    assert r.status_code == 403                                         # owners cannot override
    assert client.get("/v1/stream", params={"video_id": vid}, headers=tokens["alice"]).status_code == 200

    oncall = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), "oncall", scopes=["ops"])
    ops = {"Authorization": f"Bearer {oncall}"}
    r = client.delete(f"/videos/{vid}", params={"retention_override": "legal hold lifted, ticket 42"}, headers=ops)
    assert r.status_code == 200, r.text
    deleted = recorder.wait(vid, "VideoDeleted")
    assert deleted["requested_by"] == "oncall" and deleted["owner_id"] == "alice"
    assert deleted["reason"].startswith("retention_override: legal hold lifted, ticket 42")
