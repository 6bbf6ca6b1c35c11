"""The delivery API in this process, and videos published the way the pipeline leaves them.

Shared by the integration tests that talk to ``GET /v1/stream`` (delivery,
stream restore): the app with the delivery routers, viewer tokens, a real
resumable upload through the API, then the published objects written to S3
and the pipeline's events (stage transitions, AssetPublished) produced to
Kafka, without running ffmpeg (the pipeline has its own tests).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framelog.api import access, deletion, events, keys, stream, videos
from framelog.api.app import assemble
from framelog.core import object_keys
from framelog.core.config import Config
from framelog.processors.identity import Keyring, mint_token
from framelog.schemas.events import new_event
from framelog.sinks.object_store import ObjectStore
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from tests.integration.support import wait_for

DEADLINE = 60.0
KEY = bytes(range(16))
QUALITIES = ("720p", "360p")          # the renditions publish() announces


def make_app(config: Config) -> FastAPI:
    return assemble(config, [m.router for m in (videos, events, keys, access, stream, deletion)])


def bearer(config: Config, user: str, *ws: str, scopes: tuple[str, ...] = ("videos:write",)) -> dict[str, str]:
    """An Authorization header with a token of ``user`` signed with the stack's keyring."""
    token = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), user, workspaces=ws, scopes=scopes)
    return {"Authorization": f"Bearer {token}"}


def viewer_tokens(config: Config) -> dict[str, dict[str, str]]:
    """Bearer headers: alice and bob share workspace ws-1, eve is elsewhere, anon has none."""
    return {"alice": bearer(config, "alice", "ws-1"), "bob": bearer(config, "bob", "ws-1"),
            "eve": bearer(config, "eve", "ws-9"), "anon": {}}


def upload(client: TestClient, headers: Mapping[str, str], **params: str) -> str:
    body = os.urandom(32)
    r = client.post("/videos", params=params, headers={"Upload-Length": str(len(body)), "Tus-Resumable": "1.0.0",
                                                        **headers})
    assert r.status_code == 201, r.text
    vid = r.json()["video_id"]
    r = client.patch(f"/videos/{vid}/upload", content=body,
                     headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0",
                              "Tus-Resumable": "1.0.0", **headers})
    assert r.status_code == 204, r.text
    return vid


def publish(config: Config, video_id: str) -> str:
    """What cdn_upload leaves behind: objects, all stages succeeded, AssetPublished. Returns the mp4 key."""
    store = ObjectStore(config.object_storage, config.stack.state_dir)
    mp4 = f"videos/2026/12/720p/{video_id}.mp4"          # the seed's CDN path (validation.source_key)
    store.put_bytes(object_keys.master_playlist(video_id),
                    b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=900000\n720p/playlist.m3u8\n",
                    "application/vnd.apple.mpegurl")
    for q in QUALITIES:
        store.put_bytes(object_keys.rendition_playlist(video_id, q), b"#EXTM3U\n", "application/vnd.apple.mpegurl")
        store.put_bytes(object_keys.hls_file(video_id, q, "seg_000.ts"), b"\x47" * 188, "video/mp2t")
    store.put_bytes(object_keys.subtitles_object(video_id, "en-US/playlist.m3u8"), b"#EXTM3U\n",
                    "application/vnd.apple.mpegurl")
    store.put_bytes(object_keys.captions_vtt(video_id), b"WEBVTT\n", "text/vtt")
    store.put_bytes(object_keys.hls_key(video_id), KEY)
    store.put_bytes(object_keys.thumbnail(video_id, "poster.jpg"), b"jpeg", "image/jpeg")
    store.put_bytes(object_keys.chapters_vtt(video_id), b"WEBVTT\n", "text/vtt")
    store.put_bytes(object_keys.analysis_report(video_id), b"{}", "application/json")
    store.put_bytes(f"work/{video_id}/job-1/cdn_upload/attempt-1/x", b"x")
    store.put_bytes(mp4, b"mp4", "video/mp4")
    rendition = lambda q, h, bw: dict(name=q, width=h * 16 // 9, height=h, bandwidth=bw, average_bandwidth=bw,  # noqa: E731
                                      codecs="avc1.4d401f,mp4a.40.2", frame_rate=25.0,
                                      playlist_key=object_keys.rendition_playlist(video_id, q), segment_count=1,
                                      size_bytes=188)
    with EventProducer(config.streams) as producer:
        for stage in config.pipeline.stage_names:
            producer.send(topics.STAGE_TRANSITIONS, "StageTransition", new_event(
                "StageTransition", video_id=video_id, job_id="job-1", stage=stage, state="succeeded"))
        producer.send(topics.ASSETS, "AssetPublished", new_event(
            "AssetPublished", video_id=video_id, job_id="job-1",
            renditions=[rendition("720p", 720, 2_000_000), rendition("360p", 360, 600_000)],
            master_playlist_key=object_keys.master_playlist(video_id), duration_seconds=4.0,
            thumbnails=[object_keys.thumbnail(video_id, "poster.jpg")], chapters_key=object_keys.chapters_vtt(video_id),
            key_id=object_keys.hls_key(video_id),
            metadata={"source_key": mp4, "captions": "ok", "captions_language": "en-US",
                      "captions_playlist_key": object_keys.subtitles_object(video_id, "en-US/playlist.m3u8"),
                      "captions_key": object_keys.captions_vtt(video_id)}))
    return mp4


def published(client: TestClient, config: Config, tokens, visibility: str, **params: str) -> str:
    vid = upload(client, tokens["alice"], visibility=visibility, **params)
    publish(config, vid)
    wait_for(lambda: client.get("/v1/stream", params={"video_id": vid}, headers=tokens["alice"]).status_code == 200,
             f"video {vid} to become playable", DEADLINE)
    return vid


def stream_of(client: TestClient, vid: str, who: Mapping[str, str], **params: str) -> httpx.Response:
    return client.get("/v1/stream", params={"video_id": vid, **params}, headers=dict(who))


def key_with(client: TestClient, grant_url_or_vid: str, grant: str, who: Mapping[str, str] = {}) -> httpx.Response:
    return client.get(f"/v1/keys/{grant_url_or_vid}?{grant}", headers=dict(who))
