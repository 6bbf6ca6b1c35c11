"""The web player's server side (api/player.py) and its JavaScript unit tests (node --test web/test/)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from framelog.api import player, studio
from framelog.api.app import assemble
from framelog.processors.abr import js_constants

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(config) -> TestClient:
    with TestClient(assemble(config, [player.router, studio.router], warm=())) as c:   # nothing started: no stack
        yield c


def _settings(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="framelog-player-config">(.*?)</script>', page, re.S)
    assert m, page
    return json.loads(m.group(1))


def test_page_carries_the_configured_thresholds(client, config):
    r = client.get("/player/abc123")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    settings = _settings(r.text)
    assert settings["videoId"] == "abc123"
    assert settings["abr"] == js_constants(config.abr, config.hls.quality_levels)
    assert settings["heartbeatMs"] == config.player.heartbeat_interval * 1000
    assert settings["eventFlushMs"] == config.player.event_flush_interval * 1000
    assert settings["eventBatchMax"] == config.player.event_batch_max
    assert '<script type="module" src="/player/assets/player.js">' in r.text


def test_bad_video_id_is_refused(client):
    assert client.get("/player/..%2Fetc").status_code in (400, 404)
    assert client.get("/player/a%20b").status_code == 400


def test_assets_are_served_and_nothing_else(client):
    for name in ("player.js", "abr.js", "abr-hls.js", "edges.js", "playback-events.js", "player.css", "chapters.js",
                 "viewer-token.js", "analytics.js", "analytics-format.js", "analytics.css"):
        r = client.get(f"/player/assets/{name}")
        assert r.status_code == 200, name
        assert r.headers["cache-control"] == "no-cache"
    assert client.get("/player/assets/player.html").status_code == 404
    assert client.get("/player/assets/..%2F..%2Fpyproject.toml").status_code == 404
    assert client.get("/player/assets/.hidden.js").status_code == 404


def test_hls_js_comes_from_node_modules(client):
    if not player.HLS_JS.is_file():
        pytest.fail("node_modules/hls.js is missing: run scripts/bootstrap.sh (npm ci)")
    r = client.get("/player/assets/vendor/hls.mjs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert re.search(rb"export\{.* as default", r.content[-4000:], re.S)


def test_uplot_comes_from_node_modules_and_other_vendor_names_do_not(client):
    for name, kind in (("uplot.mjs", "text/javascript"), ("uplot.css", "text/css")):
        r = client.get(f"/player/assets/vendor/{name}")
        assert r.status_code == 200, (name, r.text[:200])
        assert r.headers["content-type"].startswith(kind)
    assert b"export { uPlot as default }" in client.get("/player/assets/vendor/uplot.mjs").content[-2000:]
    assert client.get("/player/assets/vendor/..%2F..%2Fpackage.json").status_code == 404
    assert client.get("/player/assets/vendor/react.js").status_code == 404


def test_the_analytics_page_carries_its_settings_and_no_data(client, config):
    r = client.get("/studio/abc123/analytics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    m = re.search(r'<script type="application/json" id="framelog-studio-config">(.*?)</script>', r.text, re.S)
    settings = json.loads(m.group(1))
    assert settings["analyticsPath"] == "/v1/videos/abc123/analytics"
    assert settings["analysisPath"] == "/v1/videos/abc123/analysis"
    assert settings["maxSeriesPoints"] == config.analytics.max_series_points
    assert settings["intervals"] == {"1h": 3600, "1d": 86400}
    assert settings["defaultTimeframeSeconds"] == config.analytics.default_timeframe
    assert '<script type="module" src="/player/assets/analytics.js">' in r.text
    assert "cdn" not in r.text.lower() and "https://" not in r.text
    assert client.get("/studio/a%20b/analytics").status_code == 400
    assert client.get("/studio/<script>/analytics").status_code in (400, 404)


def test_javascript_unit_tests_pass():
    node = shutil.which("node")
    assert node, "node is required for the player's tests"
    proc = subprocess.run([node, "--test", "web/test/"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, FRAMELOG_PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"^# fail 0$", proc.stdout, re.M), proc.stdout[-2000:]
