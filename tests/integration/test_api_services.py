"""The API's one Services object (api/services.py), measured on the real stack: after an upload, an access
change, a stream request, a playback batch and a webhook registration the app holds one Kafka producer
(the old routers built three of their own, and every view replayed from the log a fourth for its dead
letters), and the lifespan closes every part it built."""
from __future__ import annotations

import gc
import os
import time

import confluent_kafka
import pytest
from fastapi.testclient import TestClient

from framelog.api import access, auth, deletion, events, keys, live, stream, videos, webhooks
from framelog.api.app import assemble
from framelog.api.services import PARTS
from framelog.processors.identity import Keyring, mint_token

pytestmark = pytest.mark.integration

TUS = {"Tus-Resumable": "1.0.0"}


def producers() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, confluent_kafka.Producer))


def test_one_producer_per_api_process_and_one_place_that_closes(stack, config):
    minted = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), "it-services",
                        scopes=["videos:write", "events:write"])
    token = {"Authorization": "Bearer " + minted}
    before = producers()
    app = assemble(config, [m.router for m in (auth, videos, events, keys, access, stream, deletion, webhooks, live)])
    with TestClient(app) as client:
        svc = client.app_state["services"]
        r = client.post("/videos", headers={**token, **TUS, "Upload-Length": "32"})
        assert r.status_code == 201, r.text
        vid = r.json()["video_id"]
        r = client.patch(f"/videos/{vid}/upload", content=os.urandom(32), headers={
            **token, **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text
        assert client.patch(f"/videos/{vid}/access", json={"visibility": "public"}, headers=token).status_code == 200
        r = client.get("/v1/stream", params={"video_id": vid}, headers=token)
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_playable", r.text
        r = client.post("/v1/events", headers=token, json=[{
            "type": "progress", "video_id": vid, "session_id": "s-it", "viewer_id": "it-services",
            "client_time": int(time.time() * 1000), "position_seconds": 1}])
        assert r.status_code == 202, r.text
        assert client.get("/v1/webhooks", headers=token).status_code == 200
        started = [p for p in PARTS if svc.started(p)]
        assert {"sender", "catalog", "tier_view", "status", "webhooks"} <= set(started), started
        assert producers() - before == 1
        assert svc.uploads.store is svc.store                        # the upload service is the store's user
    assert not any(svc.started(p) for p in PARTS)                   # the lifespan closed what it built
