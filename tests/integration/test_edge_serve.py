"""`framelog edge serve` (what the compose edges run) serves signed objects from the real origin."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from framelog.core.config import load_config
from framelog.core.ids import new_video_id
from framelog.processors.edge_signing import signed_edge_url
from framelog.processors.tokens import load_or_create_secret
from framelog.sinks.s3 import s3_client, s3_credentials
from framelog.stack.process import wait_until

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> tuple[int, dict, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, dict(r.headers), r.read()
    except OSError:
        return None


def test_foreground_edge_renders_its_config_and_serves_from_the_origin(stack, config, tmp_path):
    # the stack's own configuration, with this edge on a port of its own and a state dir of its own
    overlay = yaml.safe_load(open(os.environ["FRAMELOG_CONFIG_OVERLAY"])) if os.environ.get(
        "FRAMELOG_CONFIG_OVERLAY") else {}
    overlay.setdefault("cdn_strategy", {}).setdefault("primary_cdn", {})["edge_port"] = free_port()
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    env = {**os.environ, "FRAMELOG_CONFIG_OVERLAY": str(tmp_path / "overlay.yaml"),
           "FRAMELOG_STATE_DIR": str(tmp_path / "state"),
           # the stack's secret, so the origin policy it (re)writes keeps the running edges' Referer token
           "FRAMELOG_TOKEN_SECRET": load_or_create_secret(config.security, config.stack.state_dir).decode(),
           # and the stack's S3 identity, as compose hands it over (a fresh state dir would make keys of its own)
           **dict(zip(("FRAMELOG_S3_ACCESS_KEY", "FRAMELOG_S3_SECRET_KEY"),
                      s3_credentials(config.object_storage, config.stack.state_dir)))}
    edge_config = load_config(overlay=tmp_path / "overlay.yaml")
    key = f"hls/{new_video_id()}/master.m3u8"
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    s3.put_object(Bucket=config.object_storage.bucket, Key=key, Body=b"#EXTM3U\n",
                  ContentType="application/vnd.apple.mpegurl")
    secret = load_or_create_secret(config.security, config.stack.state_dir)
    url = signed_edge_url("primary_cdn", key, edge_config.cdn, edge_config.stack.host, edge_config.security,
                          secret=secret, now=time.time())
    proc = subprocess.Popen([sys.executable, "-m", "framelog.cli.main", "edge", "serve", "--provider", "primary_cdn",
                             "--listen", config.stack.host], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: proc.poll() is not None or fetch(url) is not None, 30), "edge did not answer"
        answer = fetch(url)
        assert answer is not None, proc.stdout.read().decode() if proc.poll() is not None else "no answer"
        status, headers, body = answer
        assert (status, headers["X-Edge"], body) == (200, "primary_cdn", b"#EXTM3U\n")
        assert fetch(url)[1]["X-Cache-Status"] == "HIT"
        assert (tmp_path / "state" / "edge-primary_cdn" / "access.log").stat().st_size > 0
        # the origin policy it rewrote still lets the stack's running edge in
        stack_url = signed_edge_url("primary_cdn", key, config.cdn, config.stack.host, config.security,
                                    secret=secret, now=time.time())
        assert fetch(stack_url)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)
