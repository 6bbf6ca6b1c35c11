"""Read side: the seed's ``get_video_analytics`` (plus QoE) and a guarded SQL runner.

``get_video_analytics`` reads only the hourly rollups (``video_stats_hourly``,
``video_country_hourly``, ``video_rendition_hourly``, ``quality_switch_hourly``)
with **server-side bound parameters** (``{video_id:String}``; with chdb,
clickhouse-connect hands them to the engine's own ``params``, never into the
SQL text). The seed's f-string SQL is not reproduced anywhere.

Definitions (the seed leaves them open):

* a *view* is a ``view_start`` event (``video_view``, the seed's name, counts too);
* ``unique_viewers``: distinct ``viewer_id`` over view events (``uniq``, exact
  up to tens of thousands, approximate beyond);
* ``total_watch_time``: sum of ``watch_time_delta_seconds`` of all events;
  ``average_watch_time`` = total watch time / views;
* ``completion_rate``: distinct sessions that ended or reached
  ``completion_threshold`` x duration, divided by views;
* ``engagement_rate``: (likes + shares) / views;
* QoE: average startup time of view starts that reported one,
  ``rebuffer_ratio`` = stalled seconds / (stalled + watched seconds),
  playback failures (``error`` events), quality switches up/down (by the
  configured ladder's bandwidths), watched seconds per rendition.

Time range: rollups are hourly, so ``[start, end)`` is widened to whole hours
(``start`` down, ``end`` up); the effective bounds are returned in ``timeframe``.
"""
from __future__ import annotations

import datetime as _dt
import math
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from framelog.core.config import AnalystSqlConfig, AnalyticsConfig, get_config, parse_duration
from framelog.core.errors import FramelogError
from framelog.core.ids import validate_video_id
from framelog.sinks.clickhouse.client import analyst_settings, client_is_embedded
from framelog.sinks.clickhouse.migrations import analytics_tables
from framelog.sinks.clickhouse.sql_guard import UnsafeSqlError, check_query_tree, guard_sql, is_explain

__all__ = ["AnalyticsQueryError", "UnsafeSqlError", "SqlResult", "get_video_analytics", "get_video_series",
           "get_video_retention", "SERIES_INTERVALS", "timeframe_bounds", "run_readonly_sql", "check_readonly_sql"]

_UTC = _dt.UTC
_HOUR = _dt.timedelta(hours=1)


class AnalyticsQueryError(FramelogError, ValueError):
    """Bad query input (time range, id); nothing was sent to ClickHouse."""


# ---------------------------------------------------------------- time ranges

def _utc(value: Any, name: str) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return _dt.datetime.fromtimestamp(value, _UTC)
    raise AnalyticsQueryError(f"{name}: expected a datetime or epoch seconds, got {value!r}")


def _floor_hour(t: _dt.datetime) -> _dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(t: _dt.datetime) -> _dt.datetime:
    f = _floor_hour(t)
    return f if f == t else f + _HOUR


def timeframe_bounds(timeframe: str | float, now: _dt.datetime | None = None) -> tuple[_dt.datetime, _dt.datetime]:
    """The seed's ``timeframe='30d'`` as ``(now - 30d, now)``."""
    try:
        seconds = parse_duration(timeframe, "timeframe")
    except FramelogError as exc:
        raise AnalyticsQueryError(str(exc)) from None
    end = _utc(now, "now") if now is not None else _dt.datetime.now(_UTC)
    return end - _dt.timedelta(seconds=seconds), end


def _validated_range(start: Any, end: Any, analytics: AnalyticsConfig) -> tuple[_dt.datetime, _dt.datetime]:
    s, e = _utc(start, "start"), _utc(end, "end")
    if not s < e:
        raise AnalyticsQueryError(f"start {s.isoformat()} must be before end {e.isoformat()}")
    span = (e - s).total_seconds()
    if span > analytics.max_timeframe:
        raise AnalyticsQueryError(
            f"time range of {span / 86400:.1f} days exceeds analytics.max_timeframe "
            f"({analytics.max_timeframe / 86400:.0f} days)")
    lo, hi = _floor_hour(s), _ceil_hour(e)
    if lo.year < 1970 or hi.year > 2105:   # DateTime range
        raise AnalyticsQueryError("time range outside 1970..2105")
    return lo, hi


# ---------------------------------------------------------------- the seed's query

_WHERE = "video_id = {video_id:String} AND hour >= {start:DateTime('UTC')} AND hour < {end:DateTime('UTC')}"

# Four reads of the rollups by primary-key prefix. Measured on chdb over 10M
# events (2 cores): four small single-threaded queries beat one CROSS JOIN of
# the four (p50 20 ms against 30 ms); thread start-up dominates such reads.
_TOTALS_SQL = f"""
SELECT
    sum(views), uniqMerge(unique_viewers), sum(watch_time_seconds), uniqExactMerge(completed_sessions),
    sum(likes), sum(shares), sum(startups), sum(startup_time_ms_sum), sum(rebuffer_count),
    sum(rebuffer_seconds), sum(playback_failures), sum(events)
FROM video_stats_hourly
WHERE {_WHERE}
"""

_GEO_SQL = f"""
SELECT country, sum(views) AS v, uniqMerge(unique_viewers), sum(watch_time_seconds)
FROM video_country_hourly
WHERE {_WHERE}
GROUP BY country
HAVING v > 0
ORDER BY v DESC, country
"""

_RENDITION_SQL = f"""
SELECT rendition, sum(playing_seconds) AS s
FROM video_rendition_hourly
WHERE {_WHERE}
GROUP BY rendition
ORDER BY s DESC, rendition
"""

_SWITCH_SQL = f"""
SELECT sum(switches), sum(switches_up), sum(switches_down)
FROM quality_switch_hourly
WHERE {_WHERE}
"""

_QUERY_SETTINGS = {"max_threads": 1}

# With two or more sessions the reads run side by side, balanced by cost (measured on
# chdb over 10M events: totals ~12 ms, geo ~10, renditions ~7, switches ~3); on 2 cores
# two sessions cut the p50 from 38 to 21 ms.
_READS = {"totals": _TOTALS_SQL, "geo": _GEO_SQL, "renditions": _RENDITION_SQL,   # in this order,
          "switches": _SWITCH_SQL}                                                # dealt round-robin
_read_pool: ThreadPoolExecutor | None = None
_read_pool_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _read_pool
    with _read_pool_lock:
        if _read_pool is None:
            _read_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="analytics-read")
        return _read_pool


def _run_reads(sessions: Sequence[Client], params: Mapping[str, Any]) -> dict[str, list]:
    """The four rollup reads; several sessions: one group of reads per session, concurrently."""
    def run(session: Client, names: Sequence[str]) -> dict[str, list]:
        # A readonly=1 session refuses any setting change; it then runs with its own settings.
        settings = None if str(session.get_client_setting("readonly") or "0") == "1" else _QUERY_SETTINGS
        return {name: session.query(_READS[name], parameters=dict(params), settings=settings).result_rows
                for name in names}

    names = list(_READS)
    groups = [(session, names[i::len(sessions)]) for i, session in enumerate(sessions[:len(names)])]
    if len(groups) == 1:
        return run(*groups[0])
    others = [_pool().submit(run, session, names) for session, names in groups[1:]]
    out = run(*groups[0])
    for future in others:
        out.update(future.result())
    return out


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def get_video_analytics(client: Client | Sequence[Client], video_id: str, start: Any, end: Any, *,
                        analytics: AnalyticsConfig | None = None) -> dict[str, Any]:
    """Every field of the seed's ``get_video_analytics`` plus QoE, for ``[start, end)``.

    ``client``: one session, or several sessions on the same database (the reads are
    then spread over them and run concurrently). ``analytics``: the analytics section (default: the file's)."""
    analytics = analytics or get_config().analytics
    video_id = validate_video_id(video_id)
    lo, hi = _validated_range(start, end, analytics)
    params = {"video_id": video_id, "start": lo.replace(tzinfo=None), "end": hi.replace(tzinfo=None)}
    sessions = [client] if isinstance(client, Client) else list(client)
    if not sessions:
        raise ValueError("get_video_analytics needs at least one session")
    reads = _run_reads(sessions, params)

    (views, uniques, watch, completed, likes, shares, startups, startup_sum, rebuffers,
     rebuffer_s, failures, events) = reads["totals"][0]
    geo = reads["geo"]
    renditions = reads["renditions"]
    switches, up, down = reads["switches"][0]

    views, watch, rebuffer_s = int(views or 0), float(watch or 0.0), float(rebuffer_s or 0.0)
    return {
        "video_id": video_id,
        "timeframe": {"start": lo.isoformat(), "end": hi.isoformat(), "bucket": "1h"},
        "total_views": views,
        "unique_viewers": int(uniques or 0),
        "average_watch_time": _ratio(watch, views),
        "total_watch_time": watch,
        "geographic_distribution": [
            {"country": country or None, "views": int(v), "unique_viewers": int(u), "watch_time": float(w)}
            for country, v, u, w in geo],
        "engagement_rate": _ratio((likes or 0) + (shares or 0), views),
        "completion_rate": _ratio(completed or 0, views),
        "completed_views": int(completed or 0),
        "likes": int(likes or 0),
        "shares": int(shares or 0),
        "events": int(events or 0),
        "qoe": {
            "average_startup_time_ms": _ratio(startup_sum or 0.0, startups or 0),
            "rebuffer_count": int(rebuffers or 0),
            "rebuffer_seconds": rebuffer_s,
            "rebuffer_ratio": _ratio(rebuffer_s, rebuffer_s + watch),
            "playback_failures": int(failures or 0),
            "quality_switches": int(switches or 0),
            "quality_switches_up": int(up or 0),
            "quality_switches_down": int(down or 0),
            "playing_time_per_rendition": {r: float(s) for r, s in renditions},
        },
    }


# ---------------------------------------------------------------- series over time

# The interval is chosen from this table, never spliced from the caller's text: each name maps
# to the bucket width and to the SQL expression (of the rollups' ``hour`` column) that makes it.
SERIES_INTERVALS: dict[str, tuple[_dt.timedelta, str]] = {
    "1h": (_HOUR, "hour"),
    "1d": (_dt.timedelta(days=1), "toStartOfDay(hour, 'UTC')"),
}

_SERIES_STATS_SQL = """
SELECT {bucket} AS bucket,
    sum(views), uniqMerge(unique_viewers), sum(watch_time_seconds), uniqExactMerge(completed_sessions),
    sum(likes), sum(shares), sum(startups), sum(startup_time_ms_sum), sum(rebuffer_count),
    sum(rebuffer_seconds), sum(playback_failures)
FROM video_stats_hourly
WHERE {where}
GROUP BY bucket
ORDER BY bucket
"""

_SERIES_SWITCH_SQL = """
SELECT {bucket} AS bucket, sum(switches)
FROM quality_switch_hourly
WHERE {where}
GROUP BY bucket
ORDER BY bucket
"""

SERIES_FIELDS = ("views", "unique_viewers", "watch_time", "completed_views", "likes", "shares",
                 "average_startup_time_ms", "rebuffer_ratio", "playback_failures", "quality_switches")


def _floor_to(t: _dt.datetime, step: _dt.timedelta) -> _dt.datetime:
    epoch = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
    return epoch + ((t - epoch) // step) * step


def series_bounds(start: Any, end: Any, interval: str,
                  analytics: AnalyticsConfig) -> tuple[_dt.datetime, _dt.datetime, int]:
    """``[start, end)`` widened to whole buckets of ``interval``, and the number of buckets; the bounds of
    ``analytics.max_timeframe`` and ``analytics.max_series_points`` checked before anything is sent."""
    if interval not in SERIES_INTERVALS:
        raise AnalyticsQueryError(f"interval must be one of {', '.join(SERIES_INTERVALS)}, got {interval!r}")
    step = SERIES_INTERVALS[interval][0]
    lo, hi = _validated_range(start, end, analytics)
    lo = _floor_to(lo, step)
    hi = _floor_to(hi, step) + (step if _floor_to(hi, step) != hi else _dt.timedelta(0))
    points = int((hi - lo) / step)
    limit = analytics.max_series_points
    if points > limit:
        raise AnalyticsQueryError(
            f"{points} buckets of {interval} exceed analytics.max_series_points ({limit}); "
            f"narrow the range or use a wider interval")
    return lo, hi, points


def get_video_series(client: Client, video_id: str, start: Any, end: Any, interval: str = "1h", *,
                     analytics: AnalyticsConfig | None = None) -> dict[str, Any]:
    """The video's rollups per hour or per day over ``[start, end)``, one point per bucket (empty buckets
    are zeros, so a chart's x axis is the time itself). Unique viewers are distinct per bucket."""
    analytics = analytics or get_config().analytics
    video_id = validate_video_id(video_id)
    lo, hi, points = series_bounds(start, end, interval, analytics)
    step, bucket = SERIES_INTERVALS[interval]
    params = {"video_id": video_id, "start": lo.replace(tzinfo=None), "end": hi.replace(tzinfo=None)}
    settings = None if str(client.get_client_setting("readonly") or "0") == "1" else _QUERY_SETTINGS
    stats = client.query(_SERIES_STATS_SQL.format(bucket=bucket, where=_WHERE), parameters=params,
                         settings=settings).result_rows
    switches = client.query(_SERIES_SWITCH_SQL.format(bucket=bucket, where=_WHERE), parameters=params,
                            settings=settings).result_rows
    by_bucket = {_utc(row[0], "bucket"): row[1:] for row in stats}
    switch_by_bucket = {_utc(row[0], "bucket"): int(row[1] or 0) for row in switches}
    times, columns = [], {name: [] for name in SERIES_FIELDS}    # type: ignore[var-annotated]
    for i in range(points):
        t = lo + i * step
        (views, uniques, watch, completed, likes, shares, startups, startup_sum, _rebuffers, rebuffer_s,
         failures) = by_bucket.get(t, (0,) * 11)
        watch, rebuffer_s = float(watch or 0.0), float(rebuffer_s or 0.0)
        times.append(int(t.timestamp()))
        for name, value in zip(SERIES_FIELDS, (
                int(views or 0), int(uniques or 0), watch, int(completed or 0), int(likes or 0), int(shares or 0),
                _ratio(startup_sum or 0.0, startups or 0), _ratio(rebuffer_s, rebuffer_s + watch),
                int(failures or 0), switch_by_bucket.get(t, 0))):
            columns[name].append(value)
    return {"video_id": video_id, "interval": interval,
            "timeframe": {"start": lo.isoformat(), "end": hi.isoformat()},
            "time": times, **columns}


# ---------------------------------------------------------------- retention

# Audience retention from the raw events: an event that carries watch time covers the stretch
# [position - watched, position] of the video; a session watched step i when one of its stretches
# overlaps [i/N, (i+1)/N) of the duration. A seek event's watch time was spent before the seek
# (web/playback-events.js), at another position, so seeks are left out. The raw table is
# ReplacingMergeTree: a duplicate not merged yet covers the same stretch, and uniqExact ignores it.
_RETENTION_SQL = """
SELECT step, uniqExact(session_id)
FROM (
    SELECT session_id,
        toInt64(floor(greatest(position_seconds - watch_time_delta_seconds, 0) / duration_seconds * {points:UInt32}))
            AS first,
        greatest(toInt64(ceil(position_seconds / duration_seconds * {points:UInt32})) - 1, first) AS last,
        arrayJoin(range(toUInt32(least(first, {points:UInt32} - 1)),
                        toUInt32(least(last, {points:UInt32} - 1)) + 1)) AS step
    FROM playback_events
    WHERE video_id = {video_id:String} AND event_time >= {start:DateTime64(3, 'UTC')}
      AND event_time < {end:DateTime64(3, 'UTC')}
      AND duration_seconds > 0 AND watch_time_delta_seconds > 0 AND type != 'seek'
)
GROUP BY step
ORDER BY step
"""

_RETENTION_SESSIONS_SQL = """
SELECT uniqExact(session_id), max(duration_seconds)
FROM playback_events
WHERE video_id = {video_id:String} AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
  AND duration_seconds > 0 AND watch_time_delta_seconds > 0 AND type != 'seek'
"""


def get_video_retention(client: Client, video_id: str, start: Any, end: Any, *,
                        analytics: AnalyticsConfig | None = None) -> dict[str, Any]:
    """Audience retention over ``[start, end)``: of the sessions that watched anything, the share that
    watched each of ``analytics.retention_points`` equal steps of the video (``retention[i]`` for the
    step starting at ``position[i]`` = i/N of the duration). Read from the raw events (kept
    ``analytics.raw_events_ttl``), since the rollups do not keep positions."""
    analytics = analytics or get_config().analytics
    video_id = validate_video_id(video_id)
    s, e = _utc(start, "start"), _utc(end, "end")
    _validated_range(s, e, analytics)
    points = analytics.retention_points
    params = {"video_id": video_id, "start": s.replace(tzinfo=None), "end": e.replace(tzinfo=None),
              "points": points}
    settings = None if str(client.get_client_setting("readonly") or "0") == "1" else _QUERY_SETTINGS
    sessions, duration = client.query(_RETENTION_SESSIONS_SQL, parameters=params, settings=settings).result_rows[0]
    rows = client.query(_RETENTION_SQL, parameters=params, settings=settings).result_rows if sessions else []
    watched = {int(step): int(n) for step, n in rows}
    sessions = int(sessions or 0)
    return {
        "video_id": video_id,
        "timeframe": {"start": s.isoformat(), "end": e.isoformat()},
        "sessions": sessions,
        "duration_seconds": float(duration) if sessions and duration is not None else None,
        "position": [i / points for i in range(points)],
        "retention": [_ratio(watched.get(i, 0), sessions) for i in range(points)],
    }


# ---------------------------------------------------------------- analysts' SQL


@dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    rows: list[tuple]
    truncated: bool


def check_readonly_sql(sql: Any, *, database: str | None = None, analyst_sql: AnalystSqlConfig | None = None) -> str:
    """Return the one statement (trailing ``;`` removed) or raise UnsafeSqlError (see sql_guard).

    ``database``: the session's (default: the file's clickhouse.database); ``analyst_sql``: the guard's bounds
    (default: the file's analyst_sql section)."""
    database = database or get_config().clickhouse.database
    analyst_sql = analyst_sql or get_config().analyst_sql
    return guard_sql(sql, database=database, tables=analytics_tables(),
                     max_chars=analyst_sql.max_sql_chars, max_depth=analyst_sql.max_nesting)


def run_readonly_sql(client: Client, sql: str, *, max_rows: int = 10_000,
                     parameters: Mapping[str, Any] | None = None, database: str | None = None,
                     analyst_sql: AnalystSqlConfig | None = None) -> SqlResult:
    """Run one analyst statement; returns column names and rows.

    Guarded three times: the allow-list guard (one SELECT over the analytics tables of the
    session's database, pure functions only), the same allow-list over the engine's own
    resolution of the statement (``EXPLAIN QUERY TREE``), and the engine's walls
    (``analyst_settings``: readonly=1, time, memory, rows and bytes limits) sent with the
    statement, so even a writer's session runs it walled. Use a client from
    ``connect_readonly`` to keep the session itself read-only too.
    """
    analyst_sql = analyst_sql or get_config().analyst_sql
    database = client.database or database or get_config().clickhouse.database
    statement = check_readonly_sql(sql, database=database, analyst_sql=analyst_sql)
    settings = analyst_settings(analyst_sql, embedded=client_is_embedded(client))
    if not is_explain(statement):      # the third reading: what the engine itself resolved
        tree = client.query(f"EXPLAIN QUERY TREE {statement}", parameters=dict(parameters or {}), settings=settings)
        check_query_tree("\n".join(str(row[0]) for row in tree.result_rows), database, analytics_tables())
    result = client.query(statement, parameters=dict(parameters or {}), settings=settings)
    rows = [tuple(r) for r in result.result_rows]
    # result_overflow_mode=break: the engine stops at (about) max_result_rows without an error
    cut = len(rows) >= analyst_sql.max_result_rows
    return SqlResult(list(result.column_names), rows[:max_rows], truncated=len(rows) > max_rows or cut)
