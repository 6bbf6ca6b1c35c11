"""Series and retention (issue 15 pt 4) on the real ClickHouse engine (chdb): events go in through the
sink, the hourly and daily series and the retention curve come out of the rollups and the raw table."""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from framelog.core.config import load_config
from framelog.sinks.clickhouse.client import connect
from framelog.sinks.clickhouse.migrations import apply_migrations
from framelog.sinks.clickhouse.queries import AnalyticsQueryError, get_video_retention, get_video_series
from framelog.sinks.clickhouse.sink import ClickHouseSink

pytestmark = pytest.mark.integration

UTC = dt.UTC
DAY = (dt.datetime.now(UTC) - dt.timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
VIDEO = "vseries"
DURATION = 100.0


def at(hours: float = 0, minutes: float = 0) -> dt.datetime:
    return DAY + dt.timedelta(hours=hours, minutes=minutes)


def ev(session: str, viewer: str, type_: str, when: dt.datetime, position: float = 0.0, watched: float = 0.0,
       **kw) -> dict:
    rec = {"event_id": str(uuid.uuid4()), "schema_version": 2, "video_id": VIDEO, "session_id": session,
           "viewer_id": viewer, "type": type_, "position_seconds": position, "watch_time_delta_seconds": watched,
           "duration_seconds": DURATION, "rendition": "720p", "country": "FR", "device": "web",
           "startup_time_ms": None, "rebuffer_duration_ms": None, "error_code": None,
           "event_time": int(when.timestamp() * 1000), "ingest_time": int(dt.datetime.now(UTC).timestamp() * 1000)}
    rec.update(kw)
    return rec


def watch(session: str, viewer: str, hour: float, *stretches: tuple[float, float]) -> list[dict]:
    """view_start, then one progress event per (from, to) stretch watched; a jump between stretches is a seek."""
    out = [ev(session, viewer, "view_start", at(hour), startup_time_ms=300)]
    pos = 0.0
    for i, (a, b) in enumerate(stretches):
        if a != pos:
            out.append(ev(session, viewer, "seek", at(hour, 1 + i), position=a, watched=0.0))
        out.append(ev(session, viewer, "progress", at(hour, 1 + i), position=b, watched=b - a))
        pos = b
    return out


@pytest.fixture(scope="module")
def db(chdb_path):
    cfg = load_config()
    cfg = dataclasses.replace(cfg, clickhouse=dataclasses.replace(
        cfg.clickhouse, dsn=f"chdb://{chdb_path}", database="framelog_series"))
    client = connect(cfg.clickhouse_dsn, cfg.clickhouse.database)
    apply_migrations(client, cfg.analytics)
    events = (
        watch("s1", "u1", 0, (0, 25), (25, 50), (50, 75), (75, 100))
        + [ev("s1", "u1", "ended", at(0, 9), position=100.0)]
        + watch("s2", "u2", 0, (0, 25), (25, 50))
        + watch("s3", "u3", 0, (0, 20), (80, 100))              # skipped the middle
        + [ev("s4", "u4", "view_start", at(2))]                    # opened, never played
        + watch("s5", "u1", 26, (0, 10))                           # the next day, a returning viewer
        + [ev("s5", "u1", "like", at(26, 5)), ev("s5", "u1", "share", at(26, 6))]
    )
    sink = ClickHouseSink(client, cfg.analytics, cfg.hls.quality_levels, max_rows=1000, max_age=60)
    for offset, record in enumerate(events):
        sink.add(record, "playback.events", 0, offset)
    sink.flush()
    yield cfg, client
    client.close()


def test_hourly_series_has_one_point_per_hour_with_zeros_between(db):
    cfg, client = db
    s = get_video_series(client, VIDEO, at(0), at(3), "1h", analytics=cfg.analytics)
    assert s["interval"] == "1h"
    assert s["time"] == [int(at(h).timestamp()) for h in range(3)]
    assert s["views"] == [3, 0, 1]
    assert s["unique_viewers"] == [3, 0, 1]
    assert s["watch_time"] == pytest.approx([100 + 50 + 40, 0, 0])
    assert s["completed_views"] == [2, 0, 0]      # s1 ended; s3 skipped to the end (past 90 %)
    assert s["average_startup_time_ms"] == pytest.approx([300, 0, 0])
    assert s["likes"] == [0, 0, 0] and s["shares"] == [0, 0, 0]


def test_daily_series_buckets_by_utc_day_and_counts_likes_and_shares(db):
    cfg, client = db
    s = get_video_series(client, VIDEO, at(0), at(48), "1d", analytics=cfg.analytics)
    assert s["time"] == [int(at(0).timestamp()), int(at(24).timestamp())]
    assert s["views"] == [4, 1]
    assert s["unique_viewers"] == [4, 1]          # distinct per day: u1 counts on both days
    assert s["watch_time"] == pytest.approx([190, 10])
    assert s["likes"] == [0, 1] and s["shares"] == [0, 1]
    # a range inside a day is widened to the whole day
    inner = get_video_series(client, VIDEO, at(25), at(26, 30), "1d", analytics=cfg.analytics)
    assert inner["timeframe"]["start"] == at(24).isoformat() and inner["views"] == [1]


def test_series_bounds_are_checked_before_any_query(db):
    cfg, client = db
    limit = cfg.analytics.max_series_points
    assert limit == 2000
    assert len(get_video_series(client, VIDEO, at(0), at(limit), "1h", analytics=cfg.analytics)["time"]) == limit
    with pytest.raises(AnalyticsQueryError, match="max_series_points"):
        get_video_series(client, VIDEO, at(0), at(limit + 1), "1h", analytics=cfg.analytics)
    with pytest.raises(AnalyticsQueryError, match="interval must be one of 1h, 1d"):
        get_video_series(client, VIDEO, at(0), at(1), "5m", analytics=cfg.analytics)
    with pytest.raises(AnalyticsQueryError, match="must be before"):
        get_video_series(client, VIDEO, at(1), at(0), "1h", analytics=cfg.analytics)
    with pytest.raises(AnalyticsQueryError, match="interval must be one of"):
        get_video_series(client, VIDEO, at(0), at(1), "1h'; DROP TABLE playback_events; --", analytics=cfg.analytics)


def test_retention_curve_counts_the_stretches_each_session_watched(db):
    cfg, client = db
    r = get_video_retention(client, VIDEO, at(0), at(48), analytics=cfg.analytics)
    n = cfg.analytics.retention_points
    assert n == 20
    assert r["sessions"] == 4 and r["duration_seconds"] == pytest.approx(DURATION)
    assert r["position"] == pytest.approx([i / n for i in range(n)])
    expected = [1.0] * 2 + [0.75] * 2 + [0.5] * 6 + [0.25] * 6 + [0.5] * 4   # steps of 5 s
    assert r["retention"] == pytest.approx(expected)
    # only the first day: s5 (0-10 s) is gone
    first = get_video_retention(client, VIDEO, at(0), at(24), analytics=cfg.analytics)
    assert first["sessions"] == 3 and first["retention"][:4] == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_retention_of_a_video_nobody_watched_is_flat_zero(db):
    cfg, client = db
    r = get_video_retention(client, "nobody-watched", at(0), at(48), analytics=cfg.analytics)
    assert r["sessions"] == 0 and r["duration_seconds"] is None
    assert r["retention"] == [0.0] * cfg.analytics.retention_points
