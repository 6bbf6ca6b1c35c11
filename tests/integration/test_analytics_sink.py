"""The analytics sink under kill -9: every event counted exactly once in ClickHouse.

The sink runs as its own process (`framelog sink analytics`) on a private
embedded engine; it is killed with SIGKILL right after its first commit,
while batches are still in flight, then restarted. Client retries (the same
event_id produced again at a later offset) are in the input too. The raw
table and the rollups must both hold each event once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH
from framelog.schemas.events import new_event
from framelog.sinks.clickhouse.runner import GROUP_ID
from framelog.stack.process import wait_until
from framelog.streams import topics
from framelog.streams.lag import group_position
from framelog.streams.producer import EventProducer

pytestmark = pytest.mark.integration

EVENTS = 30_000
RETRIES = 1_000
VIDEOS = 6


def _sink(env: dict[str, str], group: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "framelog.cli.main", "sink", "analytics", "--group", group],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _committed(config, group: str) -> tuple[int, int]:
    """(committed records, lag) of ``group`` on playback.events."""
    position = group_position(config.kafka, config.stack, group, topics.PLAYBACK_EVENTS)
    return position.committed, position.lag


def test_sink_killed_mid_batch_counts_every_event_once(stack, config, tmp_path):
    # a private engine and small batches, so the kill lands between many commits
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["analytics"]["sink_batch_max_rows"] = 2000
    cfg_path = tmp_path / "framelog.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "FRAMELOG_CONFIG": str(cfg_path), "FRAMELOG_STATE_DIR": str(config.stack.state_dir),
           "FRAMELOG_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}"}
    group = f"{GROUP_ID}-test-{uuid.uuid4().hex[:8]}"      # the sink's principal joins only groups under its id
    videos = [f"sinkkill{uuid.uuid4().hex[:8]}{i}" for i in range(VIDEOS)]

    producer = EventProducer(config.streams)
    sent = []
    for i in range(EVENTS):
        e = new_event("PlaybackEvent", session_id=f"s{i % 500}", viewer_id=f"v{i % 2000}", video_id=videos[i % VIDEOS],
                      type="progress" if i % 10 else "view_start", position_seconds=float(i % 60),
                      watch_time_delta_seconds=5.0, rendition="720p", country="US", device="web")
        sent.append(e)
        producer.send(topics.PLAYBACK_EVENTS, "PlaybackEvent", e)
    for e in sent[:RETRIES]:                     # client retries: same events, later offsets
        producer.send(topics.PLAYBACK_EVENTS, "PlaybackEvent", e)
    producer.flush(60)

    first = _sink(env, group)
    try:
        assert wait_until(lambda: _committed(config, group)[0] > 0 or first.poll() is not None, 120), \
            "the sink never committed"
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        done, lag = _committed(config, group)
        assert lag > 0, "the sink finished before it was killed: nothing was tested"
    finally:
        if first.poll() is None:
            first.kill()

    second = _sink(env, group)
    try:
        assert wait_until(lambda: _committed(config, group)[1] == 0, 180), "the restarted sink did not catch up"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)

    check = subprocess.run([sys.executable, "-c", f"""
import json
from framelog.core.config import get_config
from framelog.sinks.clickhouse.client import connect
cfg = get_config()
c = connect(cfg.clickhouse_dsn, cfg.clickhouse.database)
ids = {json.dumps(videos)}
raw = c.query("SELECT count(), uniqExact(event_id) FROM playback_events FINAL WHERE video_id IN {{v:Array(String)}}",
              parameters={{"v": ids}}).result_rows[0]
roll = c.query("SELECT sum(events), sum(views) FROM video_stats_hourly WHERE video_id IN {{v:Array(String)}}",
               parameters={{"v": ids}}).result_rows[0]
print(json.dumps([list(raw), list(roll)]))
c.close()
"""], env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
    (rows, unique), (events, views) = json.loads(check.stdout.strip().splitlines()[-1])
    assert rows == unique == EVENTS
    assert events == EVENTS                       # the rollups counted each event once
    assert views == EVENTS // 10
