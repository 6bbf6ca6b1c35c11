"""The analytics query cache (the seed's "Database Cache", 15 m) on the real API process.

An answer of GET /v1/videos/{id}/analytics is served from the cache until the
embedded sink commits new events of that video; then the next answer counts
them, long before the TTL. Hits and misses are Prometheus metrics on the
operator listener.
"""
from __future__ import annotations

import re
import uuid

import httpx
import pytest

from framelog.processors.identity import ANALYTICS_READ, Keyring, mint_token
from framelog.schemas.events import new_event
from framelog.stack.services import ApiService
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from tests.integration.support import running, wait_for

pytestmark = pytest.mark.integration

DEADLINE = 60.0


@pytest.fixture(scope="module")
def api(stack, config):
    with running(ApiService(config), 120) as service:
        yield service.address


def views(api: str, video_id: str, headers: dict[str, str]) -> int:
    r = httpx.get(f"{api}/v1/videos/{video_id}/analytics", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["total_views"]


def hits(config) -> float:
    text = httpx.get(f"http://{config.stack.host}:{config.ops_port}/metrics", timeout=10).text
    found = re.search(r'framelog_cache_requests_total\{cache="analytics_query",level="Database Cache",'
                      r'result="hit"\} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_answers_are_cached_until_the_sink_commits_new_events_of_the_video(api, config):
    token = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), "ana", scopes=[ANALYTICS_READ])
    analyst = {"Authorization": f"Bearer {token}"}
    video = f"vid_{uuid.uuid4().hex[:12]}"

    def view(i: int) -> None:
        producer.send(topics.PLAYBACK_EVENTS, "PlaybackEvent", new_event(
            "PlaybackEvent", session_id=f"s{i}", viewer_id=f"v{i}", video_id=video, type="view_start"), key=video)
        producer.flush()

    with EventProducer(config.streams) as producer:
        for i in range(3):
            view(i)
        wait_for(lambda: views(api, video, analyst) == 3, "3 views to be queryable", DEADLINE)
        before = hits(config)
        assert views(api, video, analyst) == 3 and views(api, video, analyst) == 3
        assert hits(config) >= before + 2                                # answered from the cache
        view(3)
        wait_for(lambda: views(api, video, analyst) == 4, "the 4th view to show (invalidation)", DEADLINE)
