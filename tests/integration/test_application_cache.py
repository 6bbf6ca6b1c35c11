"""The stream API's application cache (the seed's "Application Cache", 1 h): a video's delivery plan
is served from the cache until an event of the video is folded -- a new publication, an access
change, a tier change -- and the next answer is built from the log again."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from framelog.core import object_keys
from framelog.schemas.events import new_event
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from tests.integration.support import wait_for
from tests.integration.support.delivery_api import make_app, published, stream_of, viewer_tokens

pytestmark = pytest.mark.integration

DEADLINE = 60.0


@pytest.fixture(scope="module")
def client(stack, config):
    with TestClient(make_app(config)) as c:
        yield c


def names(body: dict) -> list[str]:
    return [q["name"] for q in body["qualities"]]


def test_a_plan_is_cached_until_the_video_changes_on_the_log(client, config):
    tokens = viewer_tokens(config)
    vid = published(client, config, tokens, "public")
    cache = client.app_state["services"].delivery_plans
    first = stream_of(client, vid, tokens["alice"]).json()
    hits = cache.hits
    again = stream_of(client, vid, tokens["anon"]).json()
    assert cache.hits > hits and names(again) == names(first) == ["720p", "360p"]
    assert again["manifest_url"] != "" and again["expires_at"] >= first["expires_at"]   # signed per request

    with EventProducer(config.streams) as producer:             # a re-publication with one rendition
        producer.send(topics.ASSETS, "AssetPublished", new_event(
            "AssetPublished", video_id=vid, job_id="job-2",
            renditions=[dict(name="360p", width=640, height=360, bandwidth=600_000, average_bandwidth=600_000,
                             codecs="avc1.4d401f,mp4a.40.2", frame_rate=25.0,
                             playlist_key=object_keys.rendition_playlist(vid, "360p"), segment_count=1,
                             size_bytes=188)],
            master_playlist_key=object_keys.master_playlist(vid), duration_seconds=4.0, thumbnails=[],
            chapters_key=None, key_id=None, metadata={}), key=vid)
    body = wait_for(lambda: (lambda b: b if names(b) == ["360p"] else None)(
                        stream_of(client, vid, tokens["alice"]).json()),
                    "the new publication to be served", DEADLINE)
    assert body["encryption"] is None and body["poster_url"] is None

    with EventProducer(config.streams) as producer:             # a tier change drops the plan too
        producer.send(topics.TIER_TRANSITIONS, "TierTransition", new_event(
            "TierTransition", video_id=vid, rendition="360p",
            object_keys=[object_keys.hls_file(vid, "360p", "seg_000.ts")],
            object_count=1, size_bytes=188, from_tier="hot_tier", to_tier="warm_tier", storage_class="STANDARD_IA",
            rule="Moderate usage", age_days=31.0, access_count=0), key=vid)
    dropped = cache.misses
    wait_for(lambda: (stream_of(client, vid, tokens["alice"]), cache.misses > dropped)[1],
             "the tier change to drop the cached plan", DEADLINE)
