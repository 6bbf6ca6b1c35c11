"""Analytics reads: the seed's get_video_analytics over HTTP, and read-only SQL.

Both read the app's analytics engine (``Services.analytics``,
``api.analytics_engine``: the embedded ClickHouse and, locally, the analytics
sink running beside it). Analysts' SQL runs walled and capped on sessions and
threads of its own (api/analyst_pool.py).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from framelog.api.analytics_engine import AnalyticsEngine
from framelog.api.auth import current_principal, require
from framelog.api.errors import responses
from framelog.api.services import Services, Svc
from framelog.core import object_keys
from framelog.core.errors import ApiError, InvalidIdError
from framelog.core.ids import validate_video_id
from framelog.processors.identity import ANALYTICS_READ, Principal
from framelog.sinks.clickhouse.queries import (
    SERIES_INTERVALS,
    AnalyticsQueryError,
    UnsafeSqlError,
    get_video_analytics,
    get_video_retention,
    get_video_series,
    run_readonly_sql,
    series_bounds,
)

router = APIRouter(tags=["analytics"], dependencies=[Depends(current_principal)],
                   responses=responses(400, 401, 403))


class Timeframe(BaseModel):
    start: str
    end: str
    bucket: str


class Country(BaseModel):
    country: str | None
    views: int
    unique_viewers: int
    watch_time: float


class VideoAnalytics(BaseModel):
    """The seed's get_video_analytics answer (and its quality-of-experience figures under ``qoe``)."""
    model_config = ConfigDict(extra="allow")
    video_id: str
    timeframe: Timeframe
    total_views: int
    unique_viewers: int
    average_watch_time: float | None
    total_watch_time: float
    geographic_distribution: list[Country]
    engagement_rate: float | None
    completion_rate: float | None
    completed_views: int
    likes: int
    shares: int
    events: int
    qoe: dict[str, Any]


class Series(BaseModel):
    """The rollups per bucket: ``time`` (epoch seconds) and one column of equal length per figure."""
    model_config = ConfigDict(extra="allow")
    video_id: str
    interval: str
    timeframe: dict[str, str]
    time: list[int]


class Retention(BaseModel):
    """The share of sessions that watched each step (``position``: fraction of the video)."""
    video_id: str
    timeframe: dict[str, str]
    sessions: int
    duration_seconds: float | None
    position: list[float]
    retention: list[float | None]


class Stretch(BaseModel):
    start: float
    end: float


class Chapter(Stretch):
    index: int
    title: str


class Loudness(BaseModel):
    integrated_lufs: float | None
    loudness_range_lu: float | None
    true_peak_dbfs: float | None


class Analysis(BaseModel):
    """What the AI stage published (``processors.media.analysis.Analysis``): seconds throughout."""
    model_config = ConfigDict(extra="allow")
    duration: float
    scene_changes: list[float]
    scene_scores: list[float]
    chapters: list[Chapter]
    black_segments: list[Stretch]
    silence_segments: list[Stretch]
    loudness: Loudness | None


class SqlRequest(BaseModel):
    sql: str = Field(description="one read-only statement (SELECT/WITH/SHOW/DESCRIBE/EXPLAIN)")
    max_rows: int = Field(default=10_000, description="at most analyst_sql.max_result_rows")
    parameters: dict[str, Any] = Field(default={}, description="bound server-side: {name:Type} in the statement")


class SqlResult(BaseModel):
    columns: list[Any]
    rows: list[list[Any]]
    truncated: bool


def _bad_query(message: str) -> ApiError:
    return ApiError(400, message, code="invalid_query")


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if value.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(value), UTC)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise AnalyticsQueryError(f"'{name}' must be ISO 8601 or epoch seconds, got {value!r}") from None


FROM = Query(None, alias="from", description="ISO 8601 or epoch seconds; default: the configured timeframe "
                                             "before `to`")
TO = Query(None, description="ISO 8601 or epoch seconds; default: now")


async def _readable(svc: Services, video_id: str, principal: Principal) -> None:
    """400 a malformed id; then its owner, its workspace, or analytics:read (404 unknown, 403 others)."""
    validate_video_id(video_id)
    await run_in_threadpool(svc.access.check_reader, principal, video_id, (ANALYTICS_READ,))


def _range(svc: Services, from_: str | None, to: str | None) -> tuple[datetime, datetime]:
    """``from``/``to`` (ISO 8601 or epoch seconds); default: the last ``analytics.default_timeframe``."""
    end = _parse_time(to, "to") or datetime.now(UTC)
    start = _parse_time(from_, "from") or end - timedelta(seconds=svc.engine_settings.analytics.default_timeframe)
    return start, end


async def _cached(svc: Services, key: tuple[Any, ...], video_id: str,
                  read: Callable[[AnalyticsEngine], dict[str, Any]]) -> JSONResponse:
    """``read(engine)`` under the engine's lock, through the query cache (dropped when the sink writes
    the video's events); 400 names what the query refused."""
    engine = svc.analytics

    def query() -> dict[str, Any]:
        with engine.lock:
            return read(engine)

    try:
        result = await run_in_threadpool(engine.query_cache.get_or_compute, key, query, (video_id,))
    except (InvalidIdError, AnalyticsQueryError) as exc:
        raise _bad_query(str(exc)) from None
    return JSONResponse(_jsonable(result))


def _checked_range(svc: Services, from_: str | None, to: str | None) -> tuple[datetime, datetime]:
    try:
        return _range(svc, from_, to)
    except AnalyticsQueryError as exc:
        raise _bad_query(str(exc)) from None


@router.get("/v1/videos/{video_id}/analytics", response_model=VideoAnalytics, responses=responses(404, 503))
async def video_analytics(video_id: str, svc: Svc, from_: str | None = FROM, to: str | None = TO,
                          principal: Principal = Depends(require())) -> JSONResponse:
    """The seed's get_video_analytics for one video: its owner, its workspace, or analytics:read."""
    await _readable(svc, video_id, principal)
    start, end = _checked_range(svc, from_, to)
    return await _cached(svc, (video_id, from_, to), video_id, lambda engine: get_video_analytics(
        engine.read_sessions, video_id, start, end, analytics=engine.settings.analytics))


@router.get("/v1/videos/{video_id}/analytics/series", response_model=Series, responses=responses(404, 503))
async def video_series(video_id: str, svc: Svc,
                       interval: str = Query("1h", description=f"one of {', '.join(SERIES_INTERVALS)}"),
                       from_: str | None = FROM, to: str | None = TO,
                       principal: Principal = Depends(require())) -> JSONResponse:
    """The rollups per bucket (``interval`` 1h or 1d) over ``[from, to)``, one point per bucket, columns of
    equal length (``time`` in epoch seconds, then views, unique_viewers, watch_time, ...); 400 names a bad
    interval, time or a range beyond ``analytics.max_series_points`` buckets."""
    await _readable(svc, video_id, principal)
    if interval not in SERIES_INTERVALS:
        raise _bad_query(f"'interval' must be one of {', '.join(SERIES_INTERVALS)}, got {interval!r}")
    start, end = _checked_range(svc, from_, to)
    try:
        series_bounds(start, end, interval, svc.engine_settings.analytics)          # 400 before any lock is taken
    except AnalyticsQueryError as exc:
        raise _bad_query(str(exc)) from None
    return await _cached(svc, ("series", video_id, interval, from_, to), video_id, lambda engine: get_video_series(
        engine.client, video_id, start, end, interval, analytics=engine.settings.analytics))


@router.get("/v1/videos/{video_id}/analytics/retention", response_model=Retention, responses=responses(404, 503))
async def video_retention(video_id: str, svc: Svc, from_: str | None = FROM, to: str | None = TO,
                          principal: Principal = Depends(require())) -> JSONResponse:
    """Audience retention over ``[from, to)``: the share of sessions that watched each of
    ``analytics.retention_points`` steps of the video."""
    await _readable(svc, video_id, principal)
    start, end = _checked_range(svc, from_, to)
    return await _cached(svc, ("retention", video_id, from_, to), video_id, lambda engine: get_video_retention(
        engine.client, video_id, start, end, analytics=engine.settings.analytics))


@router.get("/v1/videos/{video_id}/analysis", response_model=Analysis, responses=responses(404))
async def video_analysis(video_id: str, svc: Svc, principal: Principal = Depends(require())) -> JSONResponse:
    """What the AI stage found (chapters, scene changes, black and silent stretches, EBU R128 loudness), as
    published with the video; 404 until the video was published. Its owner, its workspace, or analytics:read."""
    await _readable(svc, video_id, principal)
    found = await run_in_threadpool(svc.store.get_json, object_keys.analysis_report(video_id))
    if found is None:
        raise ApiError(404, f"video {video_id} has no published analysis yet (still processing?)")
    return JSONResponse(found, headers={"Cache-Control": "private, no-cache"})


@router.post("/v1/sql", dependencies=[Depends(require(ANALYTICS_READ))], response_model=SqlResult,
             responses=responses(429))
async def sql(body: SqlRequest, svc: Svc) -> JSONResponse:
    """One read-only statement for analysts (also what `framelog sql` calls locally).

    400 names what the guard refused or what the engine said; 429 when
    ``analyst_sql.max_concurrent_queries`` are already running."""
    engine = svc.analytics
    limit = engine.settings.analyst_sql.max_result_rows
    if not 1 <= body.max_rows <= limit:
        raise ApiError(400, f"max_rows must be within 1..{limit}", code="invalid_field", field="max_rows")

    def query(session: Any):          # the guard's parse runs here too, off the event loop
        return run_readonly_sql(session, body.sql, max_rows=body.max_rows, parameters=body.parameters,
                                database=engine.settings.database, analyst_sql=engine.settings.analyst_sql)

    future = engine.analysts.try_submit(query)
    if future is None:
        pool = engine.analysts
        raise ApiError(429, f"{pool.capacity} analyst queries are running already; retry later",
                       {"Retry-After": str(pool.retry_after)})
    try:
        result = await asyncio.wrap_future(future)
    except (AnalyticsQueryError, UnsafeSqlError) as exc:
        raise _bad_query(str(exc)) from None
    except Exception as exc:       # a ClickHouse error in the analyst's SQL: say what the engine said
        raise _bad_query(f"{type(exc).__name__}: {exc}"[:2000]) from None
    return JSONResponse(_jsonable({"columns": result.columns, "rows": [list(r) for r in result.rows],
                                   "truncated": result.truncated}))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)
