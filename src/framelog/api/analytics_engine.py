"""The ClickHouse sessions the analytics routes read from (one set per API process, owned by ``Services``).

Locally the ClickHouse engine is embedded (chdb) and only one process may open
it, so the API process owns it: it runs the analytics sink in a thread and
serves the queries from the same engine; the sink and get_video_analytics share
one lock. Analysts' SQL takes no part in that lock: it runs walled and capped on
its own sessions and threads (api/analyst_pool.py). Against a ClickHouse server
(an http(s) DSN) the sink runs as its own service (`framelog sink analytics`)
and the API only reads. The embedded engine with the sink as its own process
(``FRAMELOG_API_EMBEDDED_SINK=0``, as the fault suite runs it) leaves the API
without analytics: the sink process owns the data directory, and the analytics
routes answer 503 ``analytics_engine_elsewhere``.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from framelog.api.analyst_pool import AnalystPool
from framelog.core.cache import analytics_query_cache
from framelog.core.config import AnalystSqlConfig, AnalyticsConfig, CachingStrategy, QualityLevel, StreamsConfig
from framelog.core.errors import ApiError
from framelog.sinks.clickhouse.client import connect, connect_readonly, is_embedded


@dataclass(frozen=True)
class AnalyticsEngineSettings:
    """What the analytics engine reads: where the data is (``dsn``: ``config.clickhouse_dsn``, ``database``:
    ``config.clickhouse.database``), the routes' bounds and the embedded sink's batches (``config.analytics``),
    the analysts' limits (``config.analyst_sql``), the Database Cache's TTL (``config.caching``) and, for the
    embedded sink, the HLS ladder (``config.hls.quality_levels``) and its Kafka client (``config.streams``).
    Built by ``api.services.engine_settings``."""
    dsn: str
    database: str
    analytics: AnalyticsConfig
    analyst_sql: AnalystSqlConfig
    caching: CachingStrategy
    quality_levels: tuple[QualityLevel, ...]
    streams: StreamsConfig


@dataclass
class AnalyticsEngine:
    settings: AnalyticsEngineSettings
    client: Any
    analysts: AnalystPool
    reader: Any = None        # a second session: get_video_analytics spreads its reads over both
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: Any = None
    # the seed's "Database Cache" (15 m): answers by video, dropped when the sink commits that video's events;
    # against a ClickHouse server the sink is another process and only the TTL bounds an answer's age
    query_cache: Any = None

    @property
    def read_sessions(self) -> list[Any]:
        return [self.client] + ([self.reader] if self.reader is not None else [])

    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner.join(timeout=30)
        self.analysts.close()
        for c in (self.reader, self.client):
            if c is not None:
                c.close()


def embedded_sink_wanted(clickhouse_dsn: str) -> bool:
    """The API hosts the analytics sink (``FRAMELOG_API_EMBEDDED_SINK``; auto: with the embedded engine)."""
    setting = os.environ.get("FRAMELOG_API_EMBEDDED_SINK", "auto")
    return is_embedded(clickhouse_dsn) if setting == "auto" else setting in ("1", "true", "yes")


def engine_elsewhere(clickhouse_dsn: str) -> bool:
    """The embedded engine belongs to a standalone sink process (chdb: one process per data directory)."""
    return is_embedded(clickhouse_dsn) and not embedded_sink_wanted(clickhouse_dsn)


def open_engine(settings: AnalyticsEngineSettings) -> AnalyticsEngine:
    """Open the sessions (and, embedded, start the analytics sink in a thread of this process)."""
    if engine_elsewhere(settings.dsn):
        raise ApiError(503, "the embedded analytics engine is owned by the standalone analytics sink "
                            "(`framelog sink analytics`); this API process cannot read it",
                       code="analytics_engine_elsewhere")
    dsn, database = settings.dsn, settings.database
    client = connect(dsn, database)
    engine = AnalyticsEngine(settings, client,
                             AnalystPool(settings.analyst_sql,
                                         lambda: connect_readonly(dsn, database, settings.analyst_sql)),
                             connect(dsn, database, create_database=False),
                             query_cache=analytics_query_cache(settings.caching))
    if embedded_sink_wanted(dsn):
        from framelog.sinks.clickhouse.runner import AnalyticsSinkRunner, AnalyticsSinkSettings, RestartingSink
        from framelog.streams.kafka_auth import SINK, as_principal

        # the embedded sink keeps the sink's principal: the API's own may not read the sink's group;
        # started again after an error, since no supervisor restarts a thread (RestartingSink)
        streams = settings.streams
        sink = AnalyticsSinkSettings(dsn, database, settings.analytics, settings.quality_levels,
                                     replace(streams, kafka=as_principal(streams.kafka, SINK)))
        engine.runner = RestartingSink(lambda: AnalyticsSinkRunner(
            sink, client=client, lock=engine.lock,
            on_videos_written=engine.query_cache.invalidate))
        engine.runner.start_thread()
    return engine
