"""Analytics reads: the seed's get_video_analytics over HTTP, and read-only SQL.

Locally the ClickHouse engine is embedded (chdb) and only one process may open
it, so the API process owns it: it runs the analytics sink in a thread and
serves the queries from the same engine; the sink and get_video_analytics share
one lock. Analysts' SQL takes no part in that lock: it runs walled and capped on
its own sessions and threads (api/analyst_pool.py). Against a ClickHouse server
(an http(s) DSN) the sink runs as its own service (`framelog sink analytics`)
and the API only reads.
"""
from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from framelog.api.access_state import ApiError, access_state
from framelog.api.analyst_pool import AnalystPool
from framelog.api.auth import current_principal, require
from framelog.core import object_keys
from framelog.core.cache import analytics_query_cache
from framelog.core.config import Config
from framelog.core.errors import InvalidIdError
from framelog.core.ids import validate_video_id
from framelog.processors.identity import ANALYTICS_READ, Principal
from framelog.sinks.clickhouse.client import connect, connect_readonly, is_embedded
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
from framelog.sinks.object_store import ObjectStore


@dataclass
class AnalyticsEngine:
    config: Config
    client: Any
    analysts: AnalystPool
    reader: Any = None        # a second session: get_video_analytics spreads its reads over both
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: Any = None
    # the seed's "Database Cache" (15 m): answers by video, dropped when the sink commits that video's events;
    # against a ClickHouse server the sink is another process and only the TTL bounds an answer's age
    query_cache: Any = None
    store: Any = None         # the bucket: the AI stage's published analysis (meta/{id}/analysis.json)

    @property
    def read_sessions(self) -> list[Any]:
        return [self.client] + ([self.reader] if self.reader is not None else [])


def embedded_sink_wanted(config: Config) -> bool:
    setting = os.environ.get("FRAMELOG_API_EMBEDDED_SINK", "auto")
    return is_embedded(config.clickhouse_dsn) if setting == "auto" else setting in ("1", "true", "yes")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: Config = app.state.config
    client = connect(config)
    engine = AnalyticsEngine(config, client, AnalystPool(config, lambda: connect_readonly(config)),
                             connect(config, create_database=False), query_cache=analytics_query_cache(config),
                             store=ObjectStore(config))
    if embedded_sink_wanted(config):
        from framelog.sinks.clickhouse.runner import AnalyticsSinkRunner
        from framelog.streams.kafka_auth import SINK, as_principal

        # the embedded sink keeps the sink's principal: the API's own may not read the sink's group
        engine.runner = AnalyticsSinkRunner(as_principal(config, SINK), client=client, lock=engine.lock,
                                            on_videos_written=engine.query_cache.invalidate)
        engine.runner.start_thread()
    app.state.analytics = engine
    try:
        yield
    finally:
        if engine.runner is not None:
            engine.runner.stop()
            engine.runner.join(timeout=30)
        engine.analysts.close()
        for c in (engine.reader, engine.client):
            c.close()


router = APIRouter(tags=["analytics"], lifespan=lifespan, dependencies=[Depends(current_principal)])


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


async def _readable(request: Request, video_id: str, principal: Principal) -> None:
    """400 a malformed id; then its owner, its workspace, or analytics:read (404 unknown, 403 others)."""
    try:
        validate_video_id(video_id)
    except InvalidIdError as exc:
        raise ApiError(400, str(exc)) from None
    await run_in_threadpool(access_state(request.app).check_reader, principal, video_id, (ANALYTICS_READ,))


def _range(engine: AnalyticsEngine, from_: str | None, to: str | None) -> tuple[datetime, datetime]:
    """``from``/``to`` (ISO 8601 or epoch seconds); default: the last ``analytics.default_timeframe``."""
    end = _parse_time(to, "to") or datetime.now(UTC)
    start = _parse_time(from_, "from") or end - timedelta(seconds=engine.config.analytics.default_timeframe)
    return start, end


def _error(exc: Exception) -> JSONResponse:
    if isinstance(exc, ApiError):
        return exc.response()
    return JSONResponse({"error": str(exc)}, status_code=400)


@router.get("/v1/videos/{video_id}/analytics")
async def video_analytics(request: Request, video_id: str, from_: str | None = Query(None, alias="from"),
                          to: str | None = None, principal: Principal = Depends(require())) -> JSONResponse:
    """The seed's get_video_analytics for one video: its owner, its workspace, or analytics:read."""
    engine: AnalyticsEngine = request.app.state.analytics
    try:
        await _readable(request, video_id, principal)
        start, end = _range(engine, from_, to)

        def query() -> dict[str, Any]:
            with engine.lock:
                return get_video_analytics(engine.read_sessions, video_id, start, end, config=engine.config)

        result = await run_in_threadpool(engine.query_cache.get_or_compute, (video_id, from_, to), query,
                                         (video_id,))
    except (ApiError, InvalidIdError, AnalyticsQueryError) as exc:
        return _error(exc)
    return JSONResponse(_jsonable(result))


@router.get("/v1/videos/{video_id}/analytics/series")
async def video_series(request: Request, video_id: str, interval: str = "1h",
                       from_: str | None = Query(None, alias="from"), to: str | None = None,
                       principal: Principal = Depends(require())) -> JSONResponse:
    """The rollups per bucket (``interval`` 1h or 1d) over ``[from, to)``, one point per bucket, columns of
    equal length (``time`` in epoch seconds, then views, unique_viewers, watch_time, ...); 400 names a bad
    interval, time or a range beyond ``analytics.max_series_points`` buckets."""
    engine: AnalyticsEngine = request.app.state.analytics
    try:
        await _readable(request, video_id, principal)
        if interval not in SERIES_INTERVALS:
            raise AnalyticsQueryError(f"'interval' must be one of {', '.join(SERIES_INTERVALS)}, got {interval!r}")
        start, end = _range(engine, from_, to)
        series_bounds(start, end, interval, engine.config)      # 400 before any lock is taken

        def query() -> dict[str, Any]:
            with engine.lock:
                return get_video_series(engine.client, video_id, start, end, interval, config=engine.config)

        result = await run_in_threadpool(engine.query_cache.get_or_compute, ("series", video_id, interval, from_, to),
                                         query, (video_id,))
    except (ApiError, InvalidIdError, AnalyticsQueryError) as exc:
        return _error(exc)
    return JSONResponse(_jsonable(result))


@router.get("/v1/videos/{video_id}/analytics/retention")
async def video_retention(request: Request, video_id: str, from_: str | None = Query(None, alias="from"),
                          to: str | None = None, principal: Principal = Depends(require())) -> JSONResponse:
    """Audience retention over ``[from, to)``: the share of sessions that watched each of
    ``analytics.retention_points`` steps of the video."""
    engine: AnalyticsEngine = request.app.state.analytics
    try:
        await _readable(request, video_id, principal)
        start, end = _range(engine, from_, to)

        def query() -> dict[str, Any]:
            with engine.lock:
                return get_video_retention(engine.client, video_id, start, end, config=engine.config)

        result = await run_in_threadpool(engine.query_cache.get_or_compute, ("retention", video_id, from_, to),
                                         query, (video_id,))
    except (ApiError, InvalidIdError, AnalyticsQueryError) as exc:
        return _error(exc)
    return JSONResponse(_jsonable(result))


@router.get("/v1/videos/{video_id}/analysis")
async def video_analysis(request: Request, video_id: str, principal: Principal = Depends(require())) -> JSONResponse:
    """What the AI stage found (chapters, scene changes, black and silent stretches, EBU R128 loudness), as
    published with the video; 404 until the video was published. Its owner, its workspace, or analytics:read."""
    engine: AnalyticsEngine = request.app.state.analytics
    try:
        await _readable(request, video_id, principal)
    except ApiError as exc:
        return exc.response()
    found = await run_in_threadpool(engine.store.get_json, object_keys.analysis_report(video_id))
    if found is None:
        return JSONResponse({"error": f"video {video_id} has no published analysis yet (still processing?)"},
                            status_code=404)
    return JSONResponse(found, headers={"Cache-Control": "private, no-cache"})


class SqlRequest(BaseModel):
    sql: str
    max_rows: int = 10_000
    parameters: dict[str, Any] = {}     # bound server-side: {name:Type} in the statement


@router.post("/v1/sql", dependencies=[Depends(require(ANALYTICS_READ))])
async def sql(request: Request, body: SqlRequest) -> JSONResponse:
    """One read-only statement for analysts (also what `framelog sql` calls locally).

    400 names what the guard refused or what the engine said; 429 when
    ``analyst_sql.max_concurrent_queries`` are already running."""
    engine: AnalyticsEngine = request.app.state.analytics
    limit = engine.config.analyst_sql.max_result_rows
    if not 1 <= body.max_rows <= limit:
        return JSONResponse({"error": f"max_rows must be within 1..{limit}"}, status_code=400)

    def query(session: Any):          # the guard's parse runs here too, off the event loop
        return run_readonly_sql(session, body.sql, max_rows=body.max_rows, parameters=body.parameters,
                                config=engine.config)

    future = engine.analysts.try_submit(query)
    if future is None:
        pool = engine.analysts
        return JSONResponse({"error": f"{pool.capacity} analyst queries are running already; retry later"},
                            status_code=429, headers={"Retry-After": str(pool.retry_after)})
    try:
        result = await asyncio.wrap_future(future)
    except (AnalyticsQueryError, UnsafeSqlError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except Exception as exc:       # a ClickHouse error in the analyst's SQL: say what the engine said
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"[:2000]}, status_code=400)
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
