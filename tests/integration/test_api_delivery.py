"""Delivery API on the real stack: access policies, share links, the stream API, the key check, delete.

A "published" video here is made the way the pipeline leaves one, without
running ffmpeg (the pipeline has its own tests): a real resumable upload
through the API (which records the access policy), then the published
objects written to S3 and the pipeline's events (stage transitions,
AssetPublished) produced to Kafka. Every wait is a condition with a deadline.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from framelog.api.upload_protocol import encode_upload_metadata
from framelog.core import object_keys
from framelog.core.object_keys import video_prefixes
from framelog.processors.edge_signing import edge_signature
from framelog.processors.tokens import issue_share_token, sign_playback
from framelog.schemas.events import new_event
from framelog.sinks.object_store import ObjectStore
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from framelog.views.catalog import VideoCatalog
from tests.integration.support import TopicRecorder, wait_for
from tests.integration.support.delivery_api import (
    KEY,
    bearer,
    key_with,
    make_app,
    published,
    stream_of,
    upload,
    viewer_tokens,
)

pytestmark = pytest.mark.integration

DEADLINE = 60.0


EDGE = ("10.20.0.1", 50000)          # the test client plays a trusted edge: its X-Viewer-Country is believed


@pytest.fixture(scope="module")
def client(stack, config):
    trusting = dataclasses.replace(config, playback_trust=dataclasses.replace(config.playback_trust,
                                                                              trusted_proxies=("10.20.0.0/16",)))
    with TestClient(make_app(trusting), client=EDGE) as c:
        yield c


@pytest.fixture(scope="module")
def recorder(stack, config):
    rec = TopicRecorder(config, (topics.PLAYBACK_EVENTS, topics.CDN_COMMANDS, topics.UPLOADS, topics.ACCESS),
                        group_prefix="it-delivery-recorder").start()
    assert rec.wait_ready(DEADLINE), rec.last_error
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def tokens(config) -> dict[str, dict[str, str]]:
    return viewer_tokens(config)


# ------------------------------------------------------------------ the stream API

def test_stream_api_refusals(client, config, tokens):
    assert stream_of(client, "", {}).status_code == 400
    assert client.get("/v1/stream").status_code == 400
    assert stream_of(client, "bad/../id", {}).status_code == 400
    assert stream_of(client, f"never-{uuid.uuid4().hex}", {}).status_code == 404
    r = stream_of(client, f"never-{uuid.uuid4().hex}", {"Authorization": "Bearer forged.token"})
    assert r.status_code == 401 and "token refused" in r.json()["error"]["message"]


def test_upload_records_the_policy_and_refuses_impersonation(client, config, tokens, recorder):
    r = client.post("/videos", params={"visibility": "secret"}, headers={"Upload-Length": "10", **tokens["alice"]})
    assert r.status_code == 400
    r = client.post("/videos", params={"owner": "bob"}, headers={"Upload-Length": "10", **tokens["alice"]})
    assert r.status_code == 403
    r = client.post("/videos", params={"workspace": "ws-9"}, headers={"Upload-Length": "10", **tokens["alice"]})
    assert r.status_code == 403
    vid = upload(client, tokens["alice"], visibility="share_link", workspace="ws-1")
    policy = recorder.wait(vid, "AccessPolicy")
    assert (policy["owner_id"], policy["workspace_id"], policy["visibility"]) == ("alice", "ws-1", "share_link")
    r = client.get(f"/videos/{vid}/access", headers=tokens["alice"])
    assert r.status_code == 200 and r.json()["visibility"] == "share_link"
    carol = bearer(config, "carol")
    r = client.post("/videos", headers={"Upload-Length": "10", "Upload-Metadata": encode_upload_metadata(
        {"visibility": "public"}), "Tus-Resumable": "1.0.0", **carol})     # what the upload client sends
    assert r.status_code == 201 and r.json()["owner"] == "carol"
    policy = recorder.wait(r.json()["video_id"], "AccessPolicy")
    assert (policy["owner_id"], policy["visibility"]) == ("carol", "public")
    r = client.post("/videos", headers={"Upload-Length": "10", "Upload-Metadata": encode_upload_metadata(
        {"owner": "carol"})})                                               # anonymous: off by default
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get(f"/videos/{vid}/access", headers=tokens["bob"]).status_code == 403
    assert client.get(f"/videos/{vid}/access").status_code == 401

    # uploaded, not processed: the owner hears so, with the status; nobody else learns anything
    r = stream_of(client, vid, tokens["alice"])
    assert r.status_code == 409 and r.json()["error"]["status"]["state"] in ("uploaded", "processing"), r.text
    assert stream_of(client, vid, tokens["eve"]).status_code == 403
    with EventProducer(config.streams) as producer:
        producer.send(topics.STAGE_TRANSITIONS, "StageTransition", new_event(
            "StageTransition", video_id=vid, job_id="job-1", stage=config.pipeline.stage_names[0], state="started"))
    def processing():
        answer = stream_of(client, vid, tokens["alice"])
        return answer if answer.json().get("error", {}).get("status", {}).get("state") == "processing" else None

    r = wait_for(processing, "the processing status", DEADLINE)
    assert r.status_code == 409 and r.json()["error"]["status"]["current_stage"] == config.pipeline.stage_names[0]


def test_private_video_for_owner_workspace_and_strangers(client, config, tokens, recorder, secret):
    vid = published(client, config, tokens, "private", workspace="ws-1")
    assert stream_of(client, vid, tokens["anon"]).status_code == 403
    assert stream_of(client, vid, tokens["eve"]).status_code == 403
    assert stream_of(client, vid, {"X-User-Id": "alice", "X-Viewer-Id": "alice"}).status_code == 403  # forged headers
    assert stream_of(client, vid, tokens["bob"]).json()["access"]["reason"] == "workspace"

    r = stream_of(client, vid, {**tokens["alice"], "X-Viewer-Country": "US"})      # the edge's trusted header
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    s = r.json()
    assert s["access"]["reason"] == "owner"
    assert [q["name"] for q in s["qualities"]] == ["720p", "360p"]
    assert all(q["availability"] == "available" for q in s["qualities"])
    assert s["cdn"]["rule"].startswith("countries:") and s["cdn"]["country"] == "US"
    provider = config.cdn.providers[s["cdn"]["primary"]]
    url = urlsplit(s["manifest_url"])
    assert url.port == provider.edge_port and url.path.endswith(f"/hls/{vid}/master.m3u8")
    _, prefix, sig, expires, *rest = url.path.split("/")          # /s/<sig>/<expires>/hls/<vid>/master.m3u8
    assert prefix == "s" and sig == edge_signature(f"/hls/{vid}/", int(expires), secret)
    assert s["stream_url"] == s["manifest_url"] and s["fallback"]["provider"] == s["cdn"]["fallback"]
    assert s["encryption"]["key_uri"].endswith(f"/v1/keys/{vid}") and s["encryption"]["grant_requires_viewer_token"]
    assert s["analytics"]["ingest_url"].endswith("/v1/events") and s["analytics"]["stream_start_recorded"]
    assert s["poster_url"] and s["chapters_url"]
    [track] = s["subtitles"]
    assert track["language"] == "en-US" and track["playlist_url"].endswith(f"/hls/{vid}/subtitles/en-US/playlist.m3u8")
    assert track["vtt_url"].endswith(f"/hls/{vid}/subtitles/captions.vtt")

    # the stream start is on the log, as a view_start of this session
    start = recorder.wait(vid, "PlaybackEvent", lambda v: v["session_id"] == s["analytics"]["session_id"])
    assert (start["type"], start["viewer_id"], start["event_id"], start["country"]) == (
        "view_start", "alice", s["analytics"]["stream_start_event_id"], "US")

    # ?country= steers routing only (another country: the default rule); analytics keep the trusted header's
    answer = stream_of(client, vid, {**tokens["alice"], "X-Viewer-Country": "US"}, country="JP").json()
    other = answer["cdn"]
    assert answer["analytics"]["country"] == "US"
    assert other["rule"] == "default" and other["primary"] == config.cdn.default_route.primary or other["failed_over"]

    # qualities
    r = stream_of(client, vid, tokens["alice"], quality="360p")
    assert r.status_code == 200 and r.json()["stream_url"].endswith(f"/hls/{vid}/360p/playlist.m3u8")
    assert r.json()["manifest_url"].endswith("/master.m3u8")
    assert stream_of(client, vid, tokens["alice"], quality="4K").status_code == 404      # in the ladder, not published
    assert stream_of(client, vid, tokens["alice"], quality="8K").status_code == 400
    assert stream_of(client, vid, tokens["alice"], quality="../x").status_code == 400


def test_key_endpoint_gives_the_key_only_to_the_grant_holder(client, config, tokens, secret):
    vid = published(client, config, tokens, "private", workspace="ws-1")
    other = published(client, config, tokens, "public")
    grant = stream_of(client, vid, tokens["alice"]).json()["encryption"]["grant"]
    assert dict(parse_qsl(grant))["viewer"] == "alice"

    r = key_with(client, vid, grant, tokens["alice"])
    assert r.status_code == 200 and r.content == KEY and "no-store" in r.headers["cache-control"]
    assert key_with(client, vid, grant).status_code == 403                     # bound: the viewer must show up
    assert key_with(client, vid, grant, tokens["bob"]).status_code == 403      # a member, but not this grant's viewer
    assert client.get(f"/v1/keys/{vid}").status_code == 401                     # no grant
    forged = grant.replace(dict(parse_qsl(grant))["sig"], "A" * 43)
    assert key_with(client, vid, forged, tokens["alice"]).status_code == 403
    expired = sign_playback(vid, f"/v1/keys/{vid}", config.security, secret=secret, now=time.time() - 100,
                            viewer_id="alice", ttl=10)
    r = key_with(client, vid, expired, tokens["alice"])
    assert r.status_code == 403 and "expired" in r.json()["error"]["message"]
    other_grant = stream_of(client, other, tokens["anon"]).json()["encryption"]["grant"]
    assert key_with(client, other, other_grant).status_code == 200                   # anonymous, public
    assert key_with(client, vid, other_grant).status_code == 403                     # another video's grant


def test_share_links_issue_use_forge_expire_revoke(client, config, tokens, recorder, secret):
    vid = published(client, config, tokens, "share_link")
    private = published(client, config, tokens, "private")
    assert stream_of(client, vid, tokens["anon"]).status_code == 403
    assert client.post(f"/videos/{vid}/share", headers=tokens["bob"]).status_code == 403
    assert client.post(f"/videos/{vid}/share").status_code == 401
    assert client.post(f"/videos/{private}/share", headers=tokens["alice"]).status_code == 409
    assert client.post(f"/videos/{vid}/share", json={"ttl_seconds": -1}, headers=tokens["alice"]).status_code == 400

    r = client.post(f"/videos/{vid}/share", json={"ttl_seconds": 3600}, headers=tokens["alice"])
    assert r.status_code == 201, r.text
    share = r.json()
    assert recorder.wait(vid, "ShareLink")["token_id"] == share["token_id"]
    s = stream_of(client, vid, tokens["anon"], share=share["token"])
    assert s.status_code == 200 and s.json()["access"]["reason"] == "share_token"
    assert s.json()["expires_at"] <= share["expires_at"]
    grant = s.json()["encryption"]["grant"]
    assert not s.json()["encryption"]["grant_requires_viewer_token"]
    assert key_with(client, vid, grant).status_code == 200

    forged = issue_share_token(vid, config.security, secret=b"not-the-secret-0123456789", now=time.time()).token
    expired = issue_share_token(vid, config.security, secret=secret, now=time.time() - 100, ttl=10).token
    other = issue_share_token(private, config.security, secret=secret, now=time.time()).token
    for token, why in [(forged, "bad_signature"), (expired, "expired"), (other, "wrong_video"),
                       ("garbage", "malformed")]:
        r = stream_of(client, vid, tokens["anon"], share=token)
        assert r.status_code == 403 and why in r.json()["error"]["message"], (why, r.text)

    assert client.delete(f"/videos/{vid}/share/{share['token_id']}", headers=tokens["eve"]).status_code == 403
    assert client.delete(f"/videos/{vid}/share/nope", headers=tokens["alice"]).status_code == 404
    r = client.delete(f"/videos/{vid}/share/{share['token']}", headers=tokens["alice"])     # the token works too
    assert r.status_code == 204
    r = stream_of(client, vid, tokens["anon"], share=share["token"])
    assert r.status_code == 403 and "revoked" in r.json()["error"]["message"]
    r = key_with(client, vid, grant)
    assert r.status_code == 403 and "revoked" in r.json()["error"]["message"]     # grants issued on it stop too
    purge = recorder.wait(vid, "CacheInvalidate", lambda v: v["reason"] == "share_link_revoked")
    assert f"/hls/{vid}/*" in purge["paths"] and purge["providers"] == []
    assert client.delete(f"/videos/{vid}/share/{share['token_id']}", headers=tokens["alice"]).status_code == 204

    # the revocation list is the log: a fresh catalog (a restarted API) rebuilds it
    with VideoCatalog(config.streams) as fresh:
        assert fresh.wait_ready(DEADLINE), fresh.last_error
        assert fresh.get(vid).revoked(share["token_id"])
    listing = client.get(f"/videos/{vid}/access", headers=tokens["alice"]).json()["share_links"]
    assert [(x["token_id"], x["revoked"]) for x in listing] == [(share["token_id"], True)]


def test_making_a_video_private_withdraws_access_and_purges(client, config, tokens, recorder):
    vid = published(client, config, tokens, "public")
    s = stream_of(client, vid, tokens["anon"])
    assert s.status_code == 200 and s.json()["access"]["reason"] == "public"
    grant = s.json()["encryption"]["grant"]
    assert key_with(client, vid, grant).status_code == 200

    access = f"/videos/{vid}/access"
    assert client.patch(access, json={"visibility": "private"}, headers=tokens["bob"]).status_code == 403
    assert client.patch(access, json={"visibility": "nope"}, headers=tokens["alice"]).status_code == 400
    r = client.patch(f"/videos/{vid}/access", json={"visibility": "private"}, headers=tokens["alice"])
    assert r.status_code == 200 and r.json()["visibility"] == "private"
    assert stream_of(client, vid, tokens["anon"]).status_code == 403
    assert key_with(client, vid, grant).status_code == 403
    recorder.wait(vid, "CacheInvalidate", lambda v: v["reason"] == "access_restricted")
    r = client.patch(f"/videos/{vid}/access", json={"visibility": "public"}, headers=tokens["alice"])
    assert r.status_code == 200 and stream_of(client, vid, tokens["anon"]).status_code == 200


def test_delete_removes_objects_purges_and_keeps_the_status(client, config, tokens, recorder):
    vid = published(client, config, tokens, "public")
    mp4 = f"videos/2026/12/720p/{vid}.mp4"
    grant = stream_of(client, vid, tokens["anon"]).json()["encryption"]["grant"]
    store = ObjectStore(config.object_storage, config.stack.state_dir)
    assert client.delete(f"/videos/{vid}").status_code == 401
    assert client.delete(f"/videos/{vid}", headers=tokens["eve"]).status_code == 403

    r = client.delete(f"/videos/{vid}", params={"reason": "test"}, headers=tokens["alice"])
    assert r.status_code == 200, r.text
    assert r.json()["objects_removed"][f"hls/{vid}/"] == 7
    for prefix in video_prefixes(vid):
        assert list(store.keys(prefix)) == [], prefix
    assert store.head(mp4) is None
    deleted = recorder.wait(vid, "VideoDeleted")
    assert (deleted["owner_id"], deleted["requested_by"], deleted["reason"]) == ("alice", "alice", "test")
    purge = recorder.wait(vid, "CacheInvalidate", lambda v: v["reason"] == "video_deleted")
    assert f"/{mp4}" in purge["paths"] and f"/thumbnails/{vid}/*" in purge["paths"]

    status = wait_for(lambda: (lambda x: x if x.json().get("state") == "deleted" else None)(
        client.get(f"/videos/{vid}", headers=tokens["alice"])), "the status to say deleted", DEADLINE)
    assert status.json()["deleted_at"]
    assert stream_of(client, vid, tokens["alice"]).status_code == 404
    assert key_with(client, vid, grant).status_code == 404
    assert client.delete(f"/videos/{vid}", headers=tokens["alice"]).status_code == 200      # idempotent
    assert len(recorder.of(vid, "VideoDeleted")) == 1


def test_stream_urls_play_through_the_edges_and_fail_over(client, config, tokens):
    from framelog.stack.nginx import Edge

    vid = published(client, config, tokens, "public")
    s = wait_for(lambda: (lambda x: x if not x["cdn"]["failed_over"] and all(x["cdn"]["health"].values()) else None)(
        stream_of(client, vid, tokens["anon"], country="US").json()), "both edges to be healthy", DEADLINE)
    r = httpx.get(s["manifest_url"], timeout=10)
    assert r.status_code == 200 and r.content.startswith(b"#EXTM3U"), r.text
    seg = s["manifest_url"].replace("/master.m3u8", "/720p/seg_000.ts")      # relative URLs verify too
    assert httpx.get(seg, timeout=10).status_code == 200
    _, _, sig, *_ = urlsplit(s["manifest_url"]).path.split("/")
    assert httpx.get(s["manifest_url"].replace(sig, "A" * len(sig)), timeout=10).status_code == 403
    unsigned = f"http://{config.stack.host}:{urlsplit(s['manifest_url']).port}/hls/{vid}/master.m3u8"
    assert httpx.get(unsigned, timeout=10).status_code == 403

    primary = Edge(config, s["cdn"]["primary"])
    primary.stop()
    try:
        moved = wait_for(lambda: (lambda x: x if x["cdn"]["failed_over"] else None)(
            stream_of(client, vid, tokens["anon"], country="US").json()), "the stream API to fail over", DEADLINE)
        assert moved["cdn"]["primary"] == s["cdn"]["fallback"] and moved["cdn"]["health"][s["cdn"]["primary"]] is False
        assert urlsplit(moved["manifest_url"]).port == config.cdn.providers[s["cdn"]["fallback"]].edge_port
        assert httpx.get(moved["manifest_url"], timeout=10).status_code == 200
    finally:
        primary.start()


def test_a_rendition_in_a_cold_tier_is_archived_until_asked_for_then_restoring(client, config, tokens):
    vid = published(client, config, tokens, "public")
    with EventProducer(config.streams) as producer:
        producer.send(topics.TIER_TRANSITIONS, "TierTransition", new_event(
            "TierTransition", video_id=vid, rendition="720p",
            object_keys=[object_keys.hls_file(vid, "720p", "seg_000.ts")],
            object_count=1, size_bytes=188, from_tier="hot_tier", to_tier="cold_tier", storage_class="GLACIER",
            rule="Archive", age_days=400.0, access_count=0))

    def archived() -> dict | None:
        s = stream_of(client, vid, tokens["anon"]).json()
        q = {x["name"]: x for x in s.get("qualities", [])}
        return q if q.get("720p", {}).get("availability") == "archived" else None

    # listed next to a playable rendition: archived, with what a restore would take; nothing asked for
    q = wait_for(archived, "the 720p rendition to show as archived", DEADLINE)
    assert q["720p"]["restore_estimate_seconds"] > 0 and q["360p"]["availability"] == "available"
    r = stream_of(client, vid, tokens["anon"], quality="720p")        # asked for: a restore starts
    assert r.status_code == 409 and int(r.headers["retry-after"]) > 0 and "restored" in r.json()["error"]["message"]
    assert r.json()["error"]["availability"] == "restoring"
    assert stream_of(client, vid, tokens["anon"], quality="360p").status_code == 200
