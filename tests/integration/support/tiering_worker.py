"""The real tiering worker with time shrunk to seconds, for integration tests.

A configuration overlay shrinks time, not the code path: rules of seconds
instead of days (cold after ``AGE_SECONDS`` with fewer than 10 accesses), a
``RESTORE_DELAY`` for the cold tier and a 0.5 s evaluation interval. The
worker is ``framelog worker --stage tiering`` as a child process of the test,
stopped (or killed) only by its pid. Its fixtures, ``tcfg`` and
``tiering_worker``, are in tests/integration/conftest.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from framelog.core.config import Config, load_config
from framelog.pipeline.worker import TIERING, groups
from framelog.schemas.events import new_event
from framelog.streams import topics
from framelog.streams.admin import admin_client, create_topics
from framelog.streams.producer import EventProducer
from tests.integration.support import wait_for

AGE_SECONDS = 3.0            # "Low usage" after this many seconds instead of 90 days
RESTORE_DELAY = 3.0
KEEP_HOT_SESSIONS = 10       # sessions that keep a rendition out of "Low usage" (fewer than 10)
SECONDS_RULES: dict[str, Any] = {
    "tiering_evaluation_interval": "0.5s",
    "tiering_default_tier": "hot_tier",
    "tiering_restore_hold": "1h",
    # retention periods shrunk with the rules (they hold an object in its tier for that long)
    "storage_tiers": {"hot_tier": {"retention_period": "0s"}, "warm_tier": {"retention_period": "0s"},
                      "cold_tier": {"restore_delay": f"{RESTORE_DELAY:g}s", "retention_period": "0s"}},
    "tiering_rules": [
        {"name": "Low usage", "min_age_days": AGE_SECONDS / 86400, "max_access_count": KEEP_HOT_SESSIONS,
         "target_tier": "cold_tier"},
        {"name": "Recent uploads", "max_age_days": AGE_SECONDS / 86400, "target_tier": "hot_tier"},
    ],
}


def seconds_config(directory: Path) -> tuple[Config, Path]:
    """This stack's configuration (its overlay, if any) with tiering time shrunk to seconds, and that overlay."""
    base = os.environ.get("FRAMELOG_CONFIG_OVERLAY")
    data = yaml.safe_load(Path(base).read_text()) if base else {}
    path = directory / "overlay.yaml"
    path.write_text(yaml.safe_dump({**(data or {}), **SECONDS_RULES}))
    cfg = load_config(overlay=path)
    create_topics(cfg.streams)
    return cfg, path


class TieringWorker:
    """``framelog worker --stage tiering`` as a child process of this test (killed only by its pid)."""

    def __init__(self, config: Config, overlay: Path, log_path: Path):
        self.config, self.overlay, self.log_path = config, overlay, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "FRAMELOG_CONFIG_OVERLAY": str(self.overlay)}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "framelog.cli.main", "worker", "--stage", TIERING],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def metrics_url(self) -> str:
        port = self.config.stack.worker_metrics_port + groups(self.config.pipeline).index(TIERING)
        return f"http://{self.config.stack.host}:{port}/metrics"


def _group_members(config: Config) -> int:
    admin = admin_client(config.kafka, config.stack)           # keep a reference: futures die with their client
    desc = admin.describe_consumer_groups([f"framelog-{TIERING}"], request_timeout=5)
    return len(next(iter(desc.values())).result(timeout=10).members)


def started_alone(config: Config, overlay: Path, log_path: Path) -> TieringWorker:
    """A started worker, once no other tiering worker is in the group.

    Another tiering worker (default rules: days, not seconds) would own part of the partitions.
    """
    wait_for(lambda: _group_members(config) == 0, "no other member in group framelog-tiering "
             "(stop other workers: framelog services stop)", timeout=30, step=0.5)
    worker = TieringWorker(config, overlay, log_path)
    worker.start()
    return worker


def play(producer: EventProducer, video_id: str, rendition: str, sessions: int) -> None:
    """Playback sessions of one rendition (a view_start and two heartbeats each: a session counts once)."""
    now = int(time.time() * 1000)
    for i in range(sessions):
        for type_ in ("view_start", "progress", "progress"):
            producer.send(topics.PLAYBACK_EVENTS, "PlaybackEvent", new_event(
                "PlaybackEvent", session_id=f"{video_id}-s{i}", viewer_id=f"viewer{i}", video_id=video_id,
                type=type_, rendition=rendition, client_time=now, ingest_time=now), key=video_id)
    producer.flush()
