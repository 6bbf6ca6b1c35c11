"""Revocation takes effect (issue 11, point 5): in chromium, through the web player and the nginx edges.

The API runs with ``security.stream_url_ttl`` of 20 s (a config overlay laid
over the one in use). A 60 s clip shared by link plays in the player; the
player renews its signed edge URLs, key grant and session through
``POST /v1/stream/renew`` and keeps playing past the first URLs' expiry: on
a link of 1.5x the top rendition's bandwidth the clip takes longer than one
lifetime to load, so fragments after the expiry (hls.js still resolves them
against the first manifest URL) come through a renewed signature. Then the owner
revokes the link: the next renewal is refused (403) and the player stops
renewing, and the edge refuses the last issued playlist and poster URLs
within one lifetime. Every wait is a condition with a deadline.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
import yaml

from framelog.clients.credentials import bearer
from framelog.core.config import Config, load_config, merge_overlay
from framelog.demo.browser import Browser, missing_requirements
from framelog.processors.identity import VIDEOS_WRITE, Keyring, mint_token
from framelog.stack.services import ApiService, WorkerService
from framelog_client.upload import upload_resumable
from tests.integration.support import running, wait_for
from tests.media.support import clips

pytestmark = pytest.mark.integration

TTL = 20                      # seconds: stream_url_ttl of this module's API
PIPELINE_DEADLINE = 420.0
PLAY_DEADLINE = 60.0
OWNER = "revocation-owner"
CLIP = {"width": 854, "height": 480, "duration": 60}   # 10 s segments
LINK_FACTOR = 1.5             # the throttled link: this times the top published rendition's bandwidth


class ShortTtlApi(ApiService):
    """The API process with another overlay (same state dir and ports as the stack's API)."""

    def __init__(self, config: Config, overlay: Path):
        super().__init__(config)
        self.overlay = overlay

    def env(self) -> dict[str, str]:
        return dict(os.environ, FRAMELOG_CONFIG_OVERLAY=str(self.overlay))


@pytest.fixture(scope="module", autouse=True)
def browser_available():
    why = missing_requirements()
    if why:
        pytest.fail(f"browser tests cannot run: {why}")


@pytest.fixture(scope="module")
def short(stack, config, tmp_path_factory) -> tuple[str, Config]:
    """(address, config) of the API restarted with stream_url_ttl = TTL; the usual API is back afterwards."""
    base = os.environ.get("FRAMELOG_CONFIG_OVERLAY")
    layered = yaml.safe_load(Path(base).read_text()) if base else {}
    layered = merge_overlay(layered or {}, {"security": {"stream_url_ttl": f"{TTL}s"}})
    overlay = tmp_path_factory.mktemp("overlay") / "short-ttl.yaml"
    overlay.write_text(yaml.safe_dump(layered))
    usual = ApiService(config)
    was_running = usual.is_running()
    if was_running:
        usual.stop()
    service = ShortTtlApi(config, overlay)
    service.start(timeout=120)
    try:
        yield service.address, load_config(overlay=overlay)
    finally:
        service.stop()
        if was_running:
            usual.start(timeout=120)


@pytest.fixture(scope="module")
def worker(stack, config):
    with running(WorkerService(config), timeout=300) as service:
        yield service


@pytest.fixture(scope="module")
def owner(config) -> dict[str, str]:
    return bearer(mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), OWNER, scopes=[VIDEOS_WRITE]))


@pytest.fixture(scope="module")
def shared(short, worker, owner, tmp_path_factory) -> tuple[str, str]:
    """(video id, share token) of a processed video opened to share links."""
    api, _ = short
    clip = clips.video(tmp_path_factory.mktemp("clip") / "revocation.mp4", **CLIP)
    vid = upload_resumable(api, clip, token=owner["Authorization"].split(" ", 1)[1], visibility="share_link")

    def state() -> str | None:
        r = httpx.get(f"{api}/videos/{vid}", headers=owner, timeout=10)
        return r.json().get("state") if r.status_code == 200 else None

    assert wait_for(lambda: state() in ("ready", "failed") and state(), f"video {vid} processed",
                    PIPELINE_DEADLINE, step=1.0) == "ready"
    r = httpx.post(f"{api}/videos/{vid}/share", json={}, headers=owner, timeout=15)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    wait_for(lambda: httpx.get(f"{api}/v1/stream", params={"video_id": vid, "share": token},
                               timeout=10).status_code == 200, "the stream API to play the share link", 60)
    return vid, token


def test_urls_are_renewed_while_playing_and_a_revoked_link_stops_serving(short, shared, owner):
    api, config = short
    assert config.security.stream_url_ttl == TTL
    vid, token = shared
    qualities = httpx.get(f"{api}/v1/stream", params={"video_id": vid, "share": token}, timeout=15).json()["qualities"]
    with Browser() as browser:
        browser.throttle(download_bps=int(LINK_FACTOR * max(q["bandwidth"] for q in qualities)))
        browser.goto(f"{api}/player/{vid}?{httpx.QueryParams({'share': token})}")
        opened = browser.wait("window.framelogPlayer && (framelogPlayer.ready || framelogPlayer.error) "
                              "&& {ready: framelogPlayer.ready, error: framelogPlayer.error}", PLAY_DEADLINE)
        assert opened["ready"], browser.log()
        first = browser.eval("({manifest: framelogPlayer.info.manifestUrl, poster: framelogPlayer.info.posterUrl, "
                             "expires: framelogPlayer.info.expiresAt})")
        assert first["poster"] and first["expires"] <= time.time() + TTL + 1
        first_base = first["manifest"].rsplit("/hls/", 1)[0]

        # renewed before the first URLs expire, and playback goes on past that expiry through the new signature
        renewal = browser.wait("framelogPlayer.renewals.find(r => r.status === 200)", TTL)
        assert renewal["manifestUrl"].rsplit("/hls/", 1)[0] != first_base
        assert httpx.get(renewal["posterUrl"], timeout=10).status_code == 200
        wait_for(lambda: time.time() > first["expires"] + 1, "the first URLs to expire", TTL + 5, step=0.5)
        assert httpx.get(first["manifest"], timeout=10).status_code == 403          # the edge checks the expiry
        later = browser.wait(f"framelogPlayer.loadedFragments.find(f => !f.url.startsWith('{first_base}/'))",
                             PLAY_DEADLINE)
        assert "/s/" in later["url"], later
        position = browser.eval("document.getElementById('video').currentTime")
        browser.wait(f"document.getElementById('video').currentTime > {position + 3}", PLAY_DEADLINE)
        assert browser.eval("framelogPlayer.error") is None and browser.eval("framelogPlayer.renewal.stopped") is False

        # the owner revokes the link: the next renewal is refused and the player stops renewing
        last = browser.eval("framelogPlayer.renewals.filter(r => r.status === 200).at(-1)")
        r = httpx.delete(f"{api}/videos/{vid}/share/{token}", headers=owner, timeout=15)
        assert r.status_code in (200, 204), r.text
        revoked_at = time.time()
        stopped = browser.wait("framelogPlayer.renewal.stopped && framelogPlayer.renewal", TTL)
        assert stopped["status"] == 403, stopped
        renewals = browser.eval("framelogPlayer.renewals.length")

        # whatever was issued last runs out within one lifetime: playlist and poster refused by the edge
        last = browser.eval("framelogPlayer.renewals.filter(r => r.status === 200).at(-1)")

        def refused() -> bool:
            return all(httpx.get(url, timeout=10).status_code == 403
                       for url in (last["manifestUrl"], last["posterUrl"]))

        wait_for(refused, "the edge to refuse the last issued playlist and poster", TTL + 5, step=0.5)
        assert time.time() - revoked_at <= TTL + 5
        assert time.time() <= last["expiresAt"] + 5
        assert browser.eval("framelogPlayer.renewals.length") == renewals              # no renewal since
