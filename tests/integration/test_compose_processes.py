"""docker-compose.yml's framelog services, run as plain processes against the local stack (issue 14 pt 4).

The compose file is rendered by the compose binary with a public base that is not loopback's usual
name (127.0.0.2); each service's own command runs with its rendered environment
(tests/integration/support/compose_env.py says what is mapped onto the local stack: service names,
volumes, the API's published port). The stack's own edges and origin shield step aside for the
module so compose's (listening on 0.0.0.0, as in their containers) take their ports. Then: every
healthcheck passes, the workers' metrics answer off loopback, and a clip uploaded through the
public API plays encrypted through URLs built from the public base, the key URI written by the edge
into the playlist as it serves it while the stored playlist names no host.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from framelog.processors.identity import Keyring, mint_token
from framelog.sinks.object_store import ObjectStore
from framelog.stack.process import port_open, wait_until
from tests.integration.support import wait_for
from tests.integration.support.compose_env import ComposeService, compose_binary, local_service, render
from tests.media.support import clips

pytestmark = pytest.mark.integration

PUBLIC_HOST = "127.0.0.2"          # not the stack's host: every URL a viewer gets must be built from it
COMPOSE_API_PORT = "8000"          # what compose's api command and healthcheck name; locally the stack's api port
EDGES = ("origin-shield", "edge-primary", "edge-secondary")
WORKERS = ("worker-intake", "worker-validation", "worker-transcoding", "worker-thumbnail-generation",
           "worker-ai-processing", "worker-optimization", "worker-cdn-upload", "worker-chunks", "worker-stitch")
PIPELINE_TIMEOUT = 420.0


@dataclass
class Deployment:
    services: dict[str, ComposeService]
    procs: dict[str, subprocess.Popen]
    api_url: str
    edge_urls: dict[str, str]
    logs: Path


def _local(argv: list[str], api_port: int) -> list[str]:
    """compose's command/healthcheck with the API's published port replaced by the stack's."""
    return [str(api_port) if a == COMPOSE_API_PORT else a for a in argv]


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


@pytest.fixture(scope="module")
def deployment(stack, config, tmp_path_factory) -> Iterator[Deployment]:
    if compose_binary() is None:
        pytest.skip("no docker compose binary (install the test extras)")
    overlay = os.environ.get("FRAMELOG_CONFIG_OVERLAY")
    if not overlay:
        pytest.skip("needs the stack's overlay (a private stack): the compose edges take the stack's edge ports")
    api_port = config.stack.api_port
    edge_ports = {key: p.edge_port for key, p in config.cdn.providers.items()}
    api_url = f"http://{PUBLIC_HOST}:{api_port}"
    edge_urls = {key: f"http://{PUBLIC_HOST}:{port}" for key, port in edge_ports.items()}
    services = render(config, {"FRAMELOG_PUBLIC_API_URL": api_url,
                               "FRAMELOG_PUBLIC_PRIMARY_CDN_URL": edge_urls["primary_cdn"],
                               "FRAMELOG_PUBLIC_SECONDARY_CDN_URL": edge_urls["secondary_cdn"]})
    state = tmp_path_factory.mktemp("compose-state")
    logs = tmp_path_factory.mktemp("compose-logs")
    local = {name: local_service(services, name, config, Path(overlay), state) for name in (*EDGES, "api", *WORKERS)}
    assert not port_open(PUBLIC_HOST, api_port), "something already serves the API port"
    for component in (*stack.edges, stack.shield):          # compose's edges take their ports for the module
        component.stop()
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, service in local.items():
            procs[name] = service.start(logs, _local(service.command, api_port))
        yield Deployment(local, procs, api_url, edge_urls, logs)
    finally:
        _stop(procs)
        stack.up()                                          # the stack's own edges and shield again


def _healthy(deployment: Deployment, name: str, api_port: int) -> bool:
    service = deployment.services[name]
    assert deployment.procs[name].poll() is None, f"{name} exited; log {deployment.logs / (name + '.log')}"
    argv = _local(service.healthcheck or [], api_port)
    return subprocess.run(argv[1:], env=service.env, capture_output=True, timeout=60).returncode == 0


def test_every_service_passes_its_compose_healthcheck(deployment, config):
    for name in deployment.services:
        assert wait_until(lambda n=name: _healthy(deployment, n, config.stack.api_port), 180, interval=1.0), (
            f"{name} never healthy; log {deployment.logs / (name + '.log')}")


def test_metrics_and_edges_answer_off_loopback(deployment, config):
    """FRAMELOG_METRICS_HOST=0.0.0.0: a Prometheus container reaches every worker's /metrics."""
    from framelog.pipeline.worker import groups

    known = groups(config.pipeline)
    for name in WORKERS:
        stage = deployment.services[name].command[-1]
        port = config.stack.worker_metrics_port + known.index(stage)
        r = httpx.get(f"http://{PUBLIC_HOST}:{port}/metrics", timeout=10)
        assert r.status_code == 200 and "framelog" in r.text, name
    for url in deployment.edge_urls.values():
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{deployment.api_url}/healthz", timeout=10).status_code == 200


def _aes128_cbc_decrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.padding import PKCS7

    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def test_encrypted_playback_through_the_public_base(deployment, config, tmp_path):
    bearer = {"Authorization": "Bearer " + mint_token(config.auth, Keyring(config.auth, config.stack.state_dir),
                                                      "alice", workspaces=("ws-1",),
                                                      scopes=("videos:write",))}
    body = clips.video(tmp_path / "in.mp4", width=320, height=180, duration=4).read_bytes()
    with httpx.Client(base_url=deployment.api_url, timeout=30) as api:
        r = api.post("/videos", headers={"Upload-Length": str(len(body)), "Tus-Resumable": "1.0.0", **bearer})
        assert r.status_code == 201, r.text
        vid = r.json()["video_id"]
        r = api.patch(f"/videos/{vid}/upload", content=body,
                      headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0",
                               "Tus-Resumable": "1.0.0", **bearer})
        assert r.status_code in (200, 204), r.text

        def done() -> dict | None:
            view = api.get(f"/videos/{vid}", headers=bearer)
            return view.json() if view.status_code == 200 and view.json().get("state") in ("ready", "failed") \
                else None

        view = wait_for(done, f"video {vid} processed by compose's workers", PIPELINE_TIMEOUT, step=1.0)
        assert view["state"] == "ready", view

        def playable() -> httpx.Response | None:        # the API's catalogue folds AssetPublished on its own
            r = api.get("/v1/stream", params={"video_id": vid}, headers=bearer)
            assert r.status_code in (200, 409), r.text
            return r if r.status_code == 200 else None

        s = wait_for(playable, f"video {vid} playable through the API", 60, step=0.5).json()

    # every URL the viewer gets is built from the public base
    assert s["manifest_url"].startswith(tuple(deployment.edge_urls.values())), s["manifest_url"]
    assert s["fallback"]["manifest_url"].startswith(tuple(deployment.edge_urls.values()))
    assert s["renewal"]["url"].startswith(deployment.api_url)
    key_uri = s["encryption"]["key_uri"]
    assert key_uri == f"{deployment.api_url}/v1/keys/{vid}"

    with httpx.Client(timeout=30) as viewer:
        master = viewer.get(s["manifest_url"])
        assert master.status_code == 200, master.text
        rendition = next(line for line in master.text.splitlines() if line and not line.startswith("#"))
        playlist_url = urljoin(s["manifest_url"], rendition)
        playlist = viewer.get(playlist_url)
        assert playlist.status_code == 200
        key_line = re.search(r'#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)",IV=0x([0-9a-fA-F]{32})', playlist.text)
        assert key_line, playlist.text
        assert key_line.group(1) == key_uri                      # written by the edge as it served the playlist
        key = viewer.get(f"{key_uri}?{s['encryption']['grant']}", headers=bearer)
        assert key.status_code == 200 and len(key.content) == 16, key.text
        segment_name = next(line for line in playlist.text.splitlines() if line and not line.startswith("#"))
        segment = viewer.get(urljoin(playlist_url, segment_name))
        assert segment.status_code == 200
    clear = _aes128_cbc_decrypt(segment.content, key.content, bytes.fromhex(key_line.group(2)))
    assert clear[0] == 0x47 and clear[188] == 0x47                # an MPEG-TS segment once decrypted
    assert segment.content[0] != 0x47 or segment.content[188] != 0x47

    # the stored playlist names no host: a new domain needs no re-transcode
    store = ObjectStore(config.object_storage, config.stack.state_dir)
    stored = store.get_bytes(f"hls/{vid}/{rendition}").decode()
    assert f'URI="/v1/keys/{vid}"' in stored and "://" not in stored.split("#EXT-X-KEY", 1)[1].split("\n", 1)[0]
    _nothing_wasted(store, vid, view)


def _nothing_wasted(store: ObjectStore, vid: str, view: dict) -> None:
    """Issue 14 pt 6: once published the bucket holds the source and the published files (and the stages'
    completion markers), nothing staged; AssetPublished names every kept object with its true size."""
    def staged() -> list[str]:
        return [k for k in store.keys(f"work/{vid}/") if not k.endswith("/_SUCCESS.json")]

    wait_for(lambda: not staged(), f"video {vid}'s staging to be discarded", 60, step=0.5)
    asset = json.loads(view["stages"]["cdn_upload"]["outputs"]["asset"])
    meta = asset["metadata"]
    sizes = {o["Key"]: o["Size"] for prefix in (f"uploads/{vid}/", f"hls/{vid}/", f"thumbnails/{vid}/",
                                                 f"keys/{vid}/", f"meta/{vid}/", f"work/{vid}/")
             for o in store.objects(prefix)}
    sizes[meta["source_key"]] = store.head(meta["source_key"])["ContentLength"]
    assert meta["upload_key"] == f"uploads/{vid}/original"
    assert int(meta["upload_size"]) == sizes[meta["upload_key"]]
    assert int(meta["mp4_size"]) == sizes[meta["source_key"]]
    assert int(meta["thumbnails_size"]) == sum(v for k, v in sizes.items() if k.startswith(f"thumbnails/{vid}/"))
    published = (f"hls/{vid}/", f"thumbnails/{vid}/", f"keys/{vid}/", f"meta/{vid}/", meta["source_key"])
    source = [k for k in sizes if k.startswith(f"uploads/{vid}/")]
    markers = [k for k in sizes if k.startswith(f"work/{vid}/")]
    assert all(k.endswith("/_SUCCESS.json") and sizes[k] < 4096 for k in markers), markers
    assert set(source) <= {meta["upload_key"], f"uploads/{vid}/_receipt.json"}, source
    assert sum(sizes.values()) == (sum(sizes[k] for k in source) + sum(sizes[k] for k in markers)
                                   + sum(v for k, v in sizes.items() if k.startswith(published)))
