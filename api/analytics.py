"""Analytics reads: the seed's get_video_analytics over HTTP, and read-only SQL.

Locally the ClickHouse engine is embedded (chdb) and only one process may open
it, so the API process owns it: it runs the analytics sink in a thread and
serves the queries from the same engine, serialised by one lock. Against a
ClickHouse server (an http(s) DSN) the sink runs as its own service
(`framelog sink analytics`) and the API only reads.
"""
from __future__ import annotations

import os
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from framelog.config import Config
from framelog.exceptions import InvalidIdError
from framelog.ids import validate_video_id
from framelog.sinks.clickhouse.client import connect, connect_readonly, is_embedded
from framelog.sinks.clickhouse.queries import AnalyticsQueryError, get_video_analytics, run_readonly_sql


@dataclass
class AnalyticsEngine:
    config: Config
    client: Any
    readonly: Any
    reader: Any = None        # a second session: get_video_analytics spreads its reads over both
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: Any = None

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
    engine = AnalyticsEngine(config, client, connect_readonly(config), connect(config, create_database=False))
    if embedded_sink_wanted(config):
        from framelog.sinks.clickhouse.runner import AnalyticsSinkRunner
        engine.runner = AnalyticsSinkRunner(config, client=client, lock=engine.lock)
        engine.runner.start_thread()
    app.state.analytics = engine
    try:
        yield
    finally:
        if engine.runner is not None:
            engine.runner.stop()
            engine.runner.join(timeout=30)
        for c in (engine.readonly, engine.reader, engine.client):
            c.close()


router = APIRouter(tags=["analytics"], lifespan=lifespan)


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if value.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(value), timezone.utc)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise AnalyticsQueryError(f"'{name}' must be ISO 8601 or epoch seconds, got {value!r}") from None


@router.get("/v1/videos/{video_id}/analytics")
async def video_analytics(request: Request, video_id: str, from_: str | None = Query(None, alias="from"),
                          to: str | None = None) -> JSONResponse:
    engine: AnalyticsEngine = request.app.state.analytics
    try:
        validate_video_id(video_id)
        end = _parse_time(to, "to") or datetime.now(timezone.utc)
        start = _parse_time(from_, "from") or end - timedelta(seconds=engine.config.analytics.default_timeframe)

        def query() -> dict[str, Any]:
            with engine.lock:
                return get_video_analytics(engine.read_sessions, video_id, start, end, config=engine.config)

        result = await run_in_threadpool(query)
    except (InvalidIdError, AnalyticsQueryError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(_jsonable(result))


class SqlRequest(BaseModel):
    sql: str
    max_rows: int = 10_000
    parameters: dict[str, Any] = {}     # bound server-side: {name:Type} in the statement


@router.post("/v1/sql")
async def sql(request: Request, body: SqlRequest) -> JSONResponse:
    """One read-only statement for analysts (also what `framelog sql` calls locally)."""
    engine: AnalyticsEngine = request.app.state.analytics
    if not 1 <= body.max_rows <= 100_000:
        return JSONResponse({"error": "max_rows must be within 1..100000"}, status_code=400)

    def query():
        with engine.lock:
            return run_readonly_sql(engine.readonly, body.sql, max_rows=body.max_rows, parameters=body.parameters)

    try:
        result = await run_in_threadpool(query)
    except AnalyticsQueryError as exc:
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
