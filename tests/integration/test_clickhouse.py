"""The ClickHouse sink, migrations, rollups and queries against the real embedded engine (chdb).

chdb hosts one engine per process and one data path per engine: this module
opens one temporary path, uses separate databases for the small fixture and
the large table, and closes every client at the end so that another module
may open another path.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import random
import statistics
import time
import uuid

import pytest

from framelog.core.config import load_config
from framelog.core.errors import InvalidIdError
from framelog.sinks.clickhouse.client import connect, connect_readonly
from framelog.sinks.clickhouse.migrations import Migration, MigrationError, apply_migrations, load_migrations
from framelog.sinks.clickhouse.queries import AnalyticsQueryError, UnsafeSqlError, get_video_analytics, run_readonly_sql
from framelog.sinks.clickhouse.sink import ClickHouseSink, dedup_token
from framelog.sinks.clickhouse.synthetic import generate_playback_events

pytestmark = pytest.mark.integration

PE = "playback.events"
QS = "playback.quality-switches"
UTC = dt.UTC


def _config(path, database):
    cfg = load_config()
    return dataclasses.replace(cfg, clickhouse=dataclasses.replace(
        cfg.clickhouse, dsn=f"chdb://{path}", database=database))


@pytest.fixture(scope="module")
def engine(chdb_path):
    path = chdb_path
    clients = []

    def open_(database, readonly=False):
        cfg = _config(path, database)
        dsn, database = cfg.clickhouse_dsn, cfg.clickhouse.database
        client = connect_readonly(dsn, database, cfg.analyst_sql) if readonly else connect(dsn, database)
        clients.append(client)
        return cfg, client

    yield open_
    for c in clients:
        c.close()


@pytest.fixture(scope="module")
def db(engine):
    cfg, client = engine("framelog_test")
    apply_migrations(client, cfg.analytics)
    return cfg, client


# ---------------------------------------------------------------- helpers

BASE = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=6)


def ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def ev(video, session, viewer, type_, at, **kw):
    rec = {"event_id": str(uuid.uuid4()), "schema_version": 1, "video_id": video, "session_id": session,
           "viewer_id": viewer, "type": type_, "position_seconds": 0.0, "watch_time_delta_seconds": 0.0,
           "duration_seconds": 60.0, "rendition": None, "country": None, "device": "desktop",
           "startup_time_ms": None, "rebuffer_duration_ms": None, "error_code": None,
           "event_time": ms(at), "ingest_time": ms(dt.datetime.now(UTC))}
    rec.update(kw)
    return rec


def qs(video, session, frm, to, at):
    return {"event_id": str(uuid.uuid4()), "video_id": video, "session_id": session, "viewer_id": "u",
            "from_quality": frm, "to_quality": to, "bandwidth": 3e6, "buffer_level": 8.0, "reason": "bandwidth",
            "event_time": ms(at), "ingest_time": ms(dt.datetime.now(UTC))}


class Offsets:
    def __init__(self):
        self.next: dict[tuple[str, int], int] = {}

    def feed(self, sink, records, topic=PE, partition=0):
        for r in records:
            off = self.next.get((topic, partition), 0)
            self.next[(topic, partition)] = off + 1
            sink.add(r, topic, partition, off)


def scalar(client, sql, **params):
    return client.query(sql, parameters=params).result_rows[0][0]


# ---------------------------------------------------------------- migrations

def test_migrations_are_idempotent_and_recorded(db):
    cfg, client = db
    assert apply_migrations(client, cfg.analytics) == []
    assert apply_migrations(client, cfg.analytics) == []
    versions = [r[0] for r in client.query("SELECT version FROM schema_migrations FINAL ORDER BY version").result_rows]
    assert versions == [m.version for m in load_migrations()]
    tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
    assert {"playback_events", "quality_switches", "video_stats_hourly", "video_country_hourly",
            "video_rendition_hourly", "quality_switch_hourly", "video_stats_hourly_mv"} <= tables
    engine_full = scalar(client, "SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                                 "AND name = 'playback_events'")
    assert "toIntervalDay(400)" in engine_full and "non_replicated_deduplication_window = 10000" in engine_full
    assert "PARTITION BY toYYYYMM(event_time)" in engine_full


def test_edited_migration_is_refused(db):
    cfg, client = db
    first = load_migrations()[0]
    with pytest.raises(MigrationError):
        apply_migrations(client, cfg.analytics, [Migration(first.version, first.name, first.sql + "\n-- edited")])


def test_new_migration_applies_once_in_order(engine):
    cfg, client = engine("framelog_mig")
    extra = Migration(9999, "probe", "CREATE TABLE IF NOT EXISTS probe (a UInt8) ENGINE = Memory;\n"
                                     "INSERT INTO probe VALUES (1);")
    applied = apply_migrations(client, cfg.analytics, load_migrations() + [extra])
    assert applied == [m.version for m in load_migrations()] + [9999]
    assert apply_migrations(client, cfg.analytics, load_migrations() + [extra]) == []
    assert scalar(client, "SELECT count() FROM probe") == 1


# ---------------------------------------------------------------- exactly-once

def test_same_batch_twice_with_same_token_leaves_one_copy(db):
    cfg, client = db
    recs = [ev("vdedup", "s1", "u1", "view_start", BASE + dt.timedelta(minutes=1)),
            ev("vdedup", "s1", "u1", "progress", BASE + dt.timedelta(minutes=2), watch_time_delta_seconds=10.0)]
    sink = ClickHouseSink(client, cfg.analytics, cfg.hls.quality_levels)
    table = ClickHouseSink.to_arrow(sink.tables[PE], recs, PE, 0, [0, 1])
    settings = {"insert_deduplication_token": dedup_token(PE, 0, 0, 1, 2), "async_insert": 0}
    client.insert_arrow("playback_events", table, settings=settings)
    client.insert_arrow("playback_events", table, settings=settings)   # a retried insert
    assert scalar(client, "SELECT count() FROM playback_events WHERE video_id = 'vdedup'") == 2
    assert scalar(client, "SELECT sum(views) FROM video_stats_hourly WHERE video_id = 'vdedup'") == 1
    assert scalar(client, "SELECT sum(watch_time_seconds) FROM video_stats_hourly WHERE video_id = 'vdedup'") == 10.0


def test_replay_after_crash_and_client_retries_are_dropped(db):
    cfg, client = db
    commits = []
    sink = ClickHouseSink(client, cfg.analytics, cfg.hls.quality_levels, on_committed=commits.append, max_rows=10_000,
                          max_age=60)
    recs = [ev("vreplay", f"s{i}", f"u{i}", "view_start", BASE + dt.timedelta(minutes=i)) for i in range(5)]
    for off, r in enumerate(recs):
        sink.add(r, PE, 4, 100 + off)
    sink.flush()
    assert commits == [{(PE, 4): 105}]
    # crash before the commit: a new process resumes at the committed offset (100) and replays
    # 100..104 with other batch boundaries plus one new record, and a client resends event 2
    # (same event_id) at a later offset.
    sink2 = ClickHouseSink(client, cfg.analytics, cfg.hls.quality_levels, max_rows=10_000, max_age=60)
    retry = dict(recs[2])
    new = ev("vreplay", "s9", "u9", "view_start", BASE + dt.timedelta(minutes=9))
    for off, r in [*enumerate(recs, start=100), (105, new), (106, retry)]:
        sink2.add(r, PE, 4, off)
    sink2.flush()
    assert sink2.stats["recovered_rows"] == 5          # the uncommitted batch re-sent: a no-op where it landed
    assert sink2.stats["duplicates_dropped"] == 6
    # same event twice within one batch
    again = ev("vreplay", "s10", "u10", "view_start", BASE + dt.timedelta(minutes=10))
    sink2.add(again, PE, 4, 107)
    sink2.add(dict(again), PE, 4, 108)
    sink2.flush()
    assert scalar(client, "SELECT count() FROM playback_events WHERE video_id = 'vreplay'") == 7
    assert scalar(client, "SELECT sum(views) FROM video_stats_hourly WHERE video_id = 'vreplay'") == 7


def test_invalid_event_ids_are_dropped_not_blocking_and_ids_are_canonical(db):
    cfg, client = db
    sink = ClickHouseSink(client, cfg.analytics, cfg.hls.quality_levels, max_rows=10_000, max_age=60)
    good = ev("vcanon", "s1", "u1", "view_start", BASE + dt.timedelta(minutes=1))
    shouting = dict(good, event_id=good["event_id"].upper())           # same id, other spelling
    bad = ev("vcanon", "s2", "u2", "view_start", BASE + dt.timedelta(minutes=2), event_id="not-a-uuid")
    for off, r in enumerate([good, bad, shouting]):
        sink.add(r, PE, 5, off)
    assert sink.flush() == {(PE, 5): 3}
    assert (sink.stats["invalid_dropped"], sink.stats["duplicates_dropped"]) == (1, 1)
    assert scalar(client, "SELECT count() FROM playback_events WHERE video_id = 'vcanon'") == 1


# ---------------------------------------------------------------- rollups and the seed's query

@pytest.fixture(scope="module")
def fixture_video(db):
    cfg, client = db
    v, H = "vfix", BASE
    m = lambda minutes: H + dt.timedelta(minutes=minutes)  # noqa: E731
    s1 = [ev(v, "s1", "u1", "view_start", m(1), startup_time_ms=400, rendition="720p", country="US"),
          ev(v, "s1", "u1", "progress", m(2), position_seconds=30.0, watch_time_delta_seconds=30.0, rendition="720p",
             country="US"),
          ev(v, "s1", "u1", "progress", m(3), position_seconds=55.0, watch_time_delta_seconds=30.0, rendition="1080p",
             country="US"),
          ev(v, "s1", "u1", "ended", m(4), position_seconds=60.0, watch_time_delta_seconds=5.0, rendition="1080p",
             country="US"),
          ev(v, "s1", "u1", "like", m(5), position_seconds=60.0, country="US")]
    s2 = [ev(v, "s2", "u2", "view_start", m(10), startup_time_ms=600, rendition="720p", country="DE"),
          ev(v, "s2", "u2", "rebuffer_start", m(11), country="DE"),
          ev(v, "s2", "u2", "rebuffer_end", m(12), rebuffer_duration_ms=2000, country="DE"),
          ev(v, "s2", "u2", "progress", m(13), position_seconds=10.0, watch_time_delta_seconds=10.0, rendition="480p",
             country="DE"),
          ev(v, "s2", "u2", "error", m(14), error_code="MEDIA_ERR_DECODE", country="DE")]
    s3 = [ev(v, "s3", "u1", "view_start", m(20), country="US"),
          ev(v, "s3", "u1", "share", m(21), country="US"),
          ev(v, "s3", "u1", "progress", m(59), position_seconds=20.0, watch_time_delta_seconds=20.0, rendition="720p",
             country="US")]
    s4 = [ev(v, "s4", "u3", "view_start", m(125)),
          ev(v, "s4", "u3", "progress", m(126), position_seconds=15.0, watch_time_delta_seconds=15.0, rendition="720p")]
    switches = [qs(v, "s1", "720p", "1080p", m(3)), qs(v, "s2", "720p", "480p", m(13)),
                qs(v, "s3", "auto", "720p", m(20))]
    sink = ClickHouseSink(client, cfg.analytics, cfg.hls.quality_levels, max_rows=7, max_age=60)
    feed = Offsets()
    # interleaved sessions, several batches
    feed.feed(sink, [x for group in zip(s1, s2) for x in group] + s3, partition=1)
    feed.feed(sink, s4, partition=2)
    feed.feed(sink, switches, topic=QS, partition=1)
    sink.flush()
    feed.feed(sink, [dict(s1[4]), dict(s3[1])], partition=1)   # client retries of the like and the share
    sink.flush()
    return cfg, client, v, H


def test_rollups_match_hand_computed_values(fixture_video):
    cfg, client, v, H = fixture_video
    a = get_video_analytics(client, v, H, H + dt.timedelta(hours=3), analytics=cfg.analytics)
    assert a["video_id"] == v
    assert a["timeframe"] == {"start": H.isoformat(), "end": (H + dt.timedelta(hours=3)).isoformat(), "bucket": "1h"}
    assert a["total_views"] == 4
    assert a["unique_viewers"] == 3
    assert a["total_watch_time"] == pytest.approx(110.0)
    assert a["average_watch_time"] == pytest.approx(27.5)
    assert a["completed_views"] == 1
    assert a["completion_rate"] == pytest.approx(0.25)
    assert a["likes"] == 1 and a["shares"] == 1
    assert a["engagement_rate"] == pytest.approx(0.5)
    assert a["geographic_distribution"] == [
        {"country": "US", "views": 2, "unique_viewers": 1, "watch_time": pytest.approx(85.0)},
        {"country": None, "views": 1, "unique_viewers": 1, "watch_time": pytest.approx(15.0)},
        {"country": "DE", "views": 1, "unique_viewers": 1, "watch_time": pytest.approx(10.0)},
    ]
    q = a["qoe"]
    assert q["average_startup_time_ms"] == pytest.approx(500.0)
    assert q["rebuffer_count"] == 1
    assert q["rebuffer_seconds"] == pytest.approx(2.0)
    assert q["rebuffer_ratio"] == pytest.approx(2.0 / 112.0)
    assert q["playback_failures"] == 1
    assert (q["quality_switches"], q["quality_switches_up"], q["quality_switches_down"]) == (3, 1, 1)
    assert q["playing_time_per_rendition"] == {"720p": pytest.approx(65.0), "1080p": pytest.approx(35.0),
                                               "480p": pytest.approx(10.0)}


def test_analytics_from_a_readonly_session_match(fixture_video, engine):
    cfg, client, v, H = fixture_video
    _, ro = engine("framelog_test", readonly=True)
    span = (H, H + dt.timedelta(hours=3))
    assert get_video_analytics(ro, v, *span, analytics=cfg.analytics) \
        == get_video_analytics(client, v, *span, analytics=cfg.analytics)


def test_analytics_spread_over_several_sessions_match_one_session(fixture_video, engine):
    cfg, client, v, H = fixture_video
    _, second = engine("framelog_test")
    _, ro = engine("framelog_test", readonly=True)
    span = (H, H + dt.timedelta(hours=3))
    one = get_video_analytics(client, v, *span, analytics=cfg.analytics)
    assert get_video_analytics([client, second], v, *span, analytics=cfg.analytics) == one
    assert get_video_analytics([client, second, ro, client, second], v, *span, analytics=cfg.analytics) == one
    with pytest.raises(ValueError):
        get_video_analytics([], v, *span, analytics=cfg.analytics)


def test_hour_buckets_and_exclusive_end(fixture_video):
    cfg, client, v, H = fixture_video
    first = get_video_analytics(client, v, H, H + dt.timedelta(hours=1), analytics=cfg.analytics)
    assert first["total_views"] == 3 and first["total_watch_time"] == pytest.approx(95.0)
    assert get_video_analytics(client, v, H + dt.timedelta(hours=1), H + dt.timedelta(hours=2),
                               analytics=cfg.analytics)["total_views"] == 0
    # a range inside an hour is widened to the whole hour
    third = get_video_analytics(client, v, H + dt.timedelta(hours=2, minutes=10),
                                H + dt.timedelta(hours=2, minutes=20), analytics=cfg.analytics)
    assert third["total_views"] == 1
    assert third["timeframe"]["start"] == (H + dt.timedelta(hours=2)).isoformat()
    # epoch seconds work too; an unknown video is all zeros
    empty = get_video_analytics(client, "no-such-video", H.timestamp(), H.timestamp() + 3600, analytics=cfg.analytics)
    assert empty["total_views"] == 0 and empty["geographic_distribution"] == [] and empty["completion_rate"] == 0.0


def test_late_and_out_of_order_events_land_in_their_event_time_buckets(db):
    cfg, client = db
    v, H = "vlate", BASE
    sink = ClickHouseSink(client, cfg.analytics, cfg.hls.quality_levels, max_rows=10_000, max_age=60)
    feed = Offsets()
    feed.feed(sink, [ev(v, "s2", "u2", "view_start", H + dt.timedelta(hours=3, minutes=5))], partition=3)
    sink.flush()
    # arrives later, happened three hours earlier (an offline client flushing its queue)
    feed.feed(sink, [ev(v, "s1", "u1", "view_start", H + dt.timedelta(minutes=30)),
                     ev(v, "s1", "u1", "progress", H + dt.timedelta(minutes=31), watch_time_delta_seconds=7.0)],
              partition=3)
    sink.flush()
    early = get_video_analytics(client, v, H, H + dt.timedelta(hours=1), analytics=cfg.analytics)
    late = get_video_analytics(client, v, H + dt.timedelta(hours=3), H + dt.timedelta(hours=4), analytics=cfg.analytics)
    assert (early["total_views"], early["total_watch_time"]) == (1, 7.0)
    assert (late["total_views"], late["total_watch_time"]) == (1, 0.0)
    hours = client.query("SELECT hour, sum(views) FROM video_stats_hourly WHERE video_id = {v:String} "
                         "GROUP BY hour ORDER BY hour", parameters={"v": v}).result_rows
    assert [h.replace(tzinfo=UTC) if h.tzinfo is None else h for h, _ in hours] == [H, H + dt.timedelta(hours=3)]


@pytest.mark.parametrize("start, end, exc", [
    (BASE, BASE, AnalyticsQueryError),
    (BASE + dt.timedelta(hours=1), BASE, AnalyticsQueryError),
    (BASE - dt.timedelta(days=4000), BASE, AnalyticsQueryError),
    ("yesterday", BASE, AnalyticsQueryError),
    (float("nan"), BASE, AnalyticsQueryError),
])
def test_query_rejects_bad_ranges(db, start, end, exc):
    cfg, client = db
    with pytest.raises(exc):
        get_video_analytics(client, "vfix", start, end, analytics=cfg.analytics)


@pytest.mark.parametrize("video_id", ["", "a/b", "x' OR '1'='1", "v" * 65, None, "vid;DROP"])
def test_query_rejects_bad_video_ids(db, video_id):
    cfg, client = db
    with pytest.raises(InvalidIdError):
        get_video_analytics(client, video_id, BASE, BASE + dt.timedelta(hours=1), analytics=cfg.analytics)


# ---------------------------------------------------------------- analysts' SQL

def test_readonly_sql_returns_columns_and_rows(db, engine):
    cfg, client = db
    _, ro = engine("framelog_test", readonly=True)
    for c in (client, ro):
        res = run_readonly_sql(
            c, "SELECT video_id, count() AS n FROM playback_events WHERE video_id = 'vfix' GROUP BY video_id;")
        assert res.columns == ["video_id", "n"]
        assert res.rows[0][0] == "vfix" and not res.truncated
    res = run_readonly_sql(ro, "SELECT arrayJoin(range(50)) AS number", max_rows=10)
    assert len(res.rows) == 10 and res.truncated


def test_readonly_sql_rejects_multi_statements_and_writes(db, engine):
    cfg, client = db
    _, ro = engine("framelog_test", readonly=True)
    before = scalar(client, "SELECT count() FROM playback_events")
    for sql in ["SELECT 1; DROP TABLE playback_events", "DROP TABLE playback_events",
                "INSERT INTO playback_events SELECT * FROM playback_events",
                "SELECT 1 INTO OUTFILE 'x.txt'", "SELECT ';'; TRUNCATE TABLE playback_events"]:
        with pytest.raises(UnsafeSqlError):
            run_readonly_sql(client, sql)
    # table functions that touch files or the network: refused by the guard (and by readonly=1 at the
    # engine, tests/security/test_sql_sandbox.py)
    for sql in ["SELECT * FROM file('/etc/hostname', 'LineAsString')",
                "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')"]:
        for c in (client, ro):
            with pytest.raises(UnsafeSqlError, match="table function"):
                run_readonly_sql(c, sql)
    # the analyst session itself stays read-only, the writer's session does not
    with pytest.raises(Exception, match="(?i)readonly"):
        ro.command("CREATE TABLE nope (a UInt8) ENGINE = Memory")
    assert scalar(client, "SELECT getSetting('readonly')") == 0
    assert scalar(client, "SELECT count() FROM playback_events") == before
    assert "playback_events" in {r[0] for r in client.query("SHOW TABLES").result_rows}


# ---------------------------------------------------------------- a large table, measured not asserted


def test_p95_of_get_video_analytics_over_a_large_table(engine, capsys):
    cfg, client = engine("framelog_perf")
    apply_migrations(client, cfg.analytics)
    n, videos, days = 1_000_000, 1000, 30
    gen = generate_playback_events(client, n, videos=videos, days=days)
    assert scalar(client, "SELECT count() FROM playback_events") == n
    rng = random.Random(7)
    end = dt.datetime.now(UTC)
    timings = []
    for _ in range(60):
        video = f"video-{rng.randrange(videos)}"
        t = time.perf_counter()
        a = get_video_analytics(client, video, end - dt.timedelta(days=30), end, analytics=cfg.analytics)
        timings.append(time.perf_counter() - t)
        assert a["total_views"] > 0
    timings = sorted(timings[10:])   # the first calls warm caches
    p50 = statistics.median(timings) * 1000
    p95 = timings[int(len(timings) * 0.95) - 1] * 1000
    with capsys.disabled():
        print(f"\n[clickhouse] generated {n:,} events in {gen:.1f}s ({n / gen:,.0f} rows/s through 3 views); "
              f"get_video_analytics over 30 days: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
