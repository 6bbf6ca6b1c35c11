"""What the API's routes share, in one object built in the app's lifespan and handed to routes by ``Depends``.

    from framelog.api.services import Svc

    @router.get("/videos/{video_id}")
    async def video_status(video_id: str, svc: Svc) -> ...:     # Svc = Annotated[Services, Depends(services)]
        svc.status.get(video_id)

One ``Services`` per app: the configuration and the parts of it the routes hand
the components they call (``stream_settings``, ``player_page``, ``engine_settings``:
no component but this composition root takes the whole ``Config``), the token verifier, the playback
trust state, one ``ObjectStore`` (the API's S3 user), one producer bridge
(``streams.emitter.AsyncEmitter``, the one async bridge: one Kafka producer per
API process), the upload service (``sinks.upload_sessions``, on that store) and the views replayed
from the log (video catalog, tier view, status table, webhook registry), the
edges' health probe and the analytics engine. The lifespan builds it, starts
what ``warm`` names at once (so the first request rarely waits for a replay)
and closes everything in one place at shutdown; a part not warmed is built
on first use (an app assembled from a few routers only builds what they use).
No router keeps state of its own on ``app.state`` and none closes another's.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from framelog.core.cache import application_cache
from framelog.core.config import Config
from framelog.core.errors import ApiError
from framelog.processors.identity import Keyring, TokenVerifier
from framelog.processors.tokens import load_or_create_secret
from framelog.sinks.object_store import ObjectStore
from framelog.sinks.upload_sessions import UploadService, UploadSettings

if TYPE_CHECKING:
    from framelog.api.access_state import AccessState
    from framelog.api.analytics_engine import AnalyticsEngine, AnalyticsEngineSettings
    from framelog.api.events import IngestSettings
    from framelog.sinks.edges.health import EdgeHealth
    from framelog.streams.emitter import AsyncEmitter
    from framelog.streams.producer import EventProducer
    from framelog.views.catalog import VideoCatalog
    from framelog.views.status import StatusTable
    from framelog.views.tier_view import TierView
    from framelog.views.webhook_registry import EndpointRegistry

log = logging.getLogger(__name__)

T = TypeVar("T")
STATUS_READY_TIMEOUT = 10.0           # how long a request waits for the status table to catch up with the log
STATUS_RETRY_AFTER = "5"
UPLOAD_READ_TIMEOUT = 300.0           # a multipart part or a streamed hash may take long on a busy store
PARTS = ("sender", "catalog", "tier_view", "status", "webhooks", "edge_health", "analytics")


class Part(Generic[T]):
    """One shared service: built once (at start when warmed, else on first use), closed with the others."""

    def __init__(self, name: str, build: Callable[[], T], close: Callable[[T], None] | None = None):
        self.name = name
        self._build = build
        self._close = close
        self._lock = threading.Lock()
        self._value: T | None = None

    @property
    def started(self) -> bool:
        return self._value is not None

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    def close(self) -> None:
        with self._lock:
            value, self._value = self._value, None
        if value is not None and self._close is not None:
            try:
                self._close(value)
            except Exception as exc:  # noqa: BLE001 - one part failing to close must not keep the others open
                log.warning("closing %s: %s", self.name, exc)


class Services:
    """Everything the routes of one app share (see the module docstring)."""

    def __init__(self, config: Config, *, ingest: IngestSettings | None = None):
        from framelog.api.access_state import AccessState
        from framelog.api.event_trust import EventTrust
        from framelog.api.events import IngestSettings
        from framelog.api.player import PlayerPageSettings
        from framelog.api.stream import StreamSettings

        self.config = config
        self.ingest = ingest or IngestSettings.from_trust(config.playback_trust)
        state_dir = config.stack.state_dir
        self.secret = load_or_create_secret(config.security, state_dir)     # signs grants, shares, sessions, edge URLs
        self.verifier = TokenVerifier(config.auth, Keyring(config.auth, state_dir))   # who is asking (api.auth)
        self.trust = EventTrust.from_settings(config.playback_trust, self.secret)   # proxies, limits (api.event_trust)
        self.store = ObjectStore(config.object_storage, config.stack.state_dir, read_timeout=UPLOAD_READ_TIMEOUT)
        self.spool_dir = Path(config.stack.state_dir) / "api-spool"
        # the seed's "Application Cache" (1 h): delivery plans by video, dropped when the catalog or the
        # tier view folds an event of the video (publish, access change, deletion, tier change)
        self.delivery_plans = application_cache(config.caching, "delivery_plans")
        # the upload service (multipart sessions on the store; announces through the one producer), and one
        # PATCH at a time per upload in this process: a lock lives while a request holds it
        uploads = UploadSettings(config.upload_limits, config.streams, config.priorities)
        self.uploads = UploadService(uploads, self.store, lambda: self.producer)
        self.upload_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # what the routes hand the components they call, instead of the whole Config (issue 12 pt 4)
        self.stream_settings = StreamSettings(config.hls.quality_levels, config.cdn, config.stack, config.security,
                                              config.delivery, config.playback_trust)     # api.stream, api.keys
        self.player_page = PlayerPageSettings(config.abr, config.hls.quality_levels, config.player)   # api.player
        self.engine_settings = engine_settings(config)          # the analytics engine, api.analytics, api.studio
        self._sender: Part[AsyncEmitter] = Part("the producer", self._open_sender, lambda s: s.close(10.0))
        self._catalog: Part[VideoCatalog] = Part("the video catalog", self._open_catalog, lambda c: c.stop())
        self._tier_view: Part[TierView] = Part("the tier view", self._open_tier_view, lambda t: t.stop())
        self._status: Part[StatusTable] = Part("the status table", self._open_status, lambda t: t.stop())
        self._webhooks: Part[EndpointRegistry] = Part("the webhook registry", self._open_webhooks,
                                                      lambda r: r.stop())
        self._edge_health: Part[EdgeHealth] = Part("the edge health probe", self._open_edge_health)
        self._analytics: Part[AnalyticsEngine] = Part("the analytics engine", self._open_analytics,
                                                      lambda e: e.close())
        self.access: AccessState = AccessState(self)

    # ------------------------------------------------------------ the parts

    @property
    def sender(self) -> AsyncEmitter:
        """The API's one producer bridge: ``await sender.send_encoded(...)`` / ``emit(topic, record)``."""
        return self._sender.get()

    @property
    def producer(self) -> EventProducer:
        """The bridge's producer, for blocking code on a worker thread (``deliver``: acknowledged) and code
        that takes an ``EventProducer`` (announce_upload, replays, the tier view's restore requests)."""
        return self.sender.producer

    @property
    def bucket(self) -> str:
        return self.store.bucket

    @property
    def catalog(self) -> VideoCatalog:
        return self._catalog.get()

    @property
    def tier_view(self) -> TierView:
        """Storage tiers of the renditions (``views.tier_view.TierView``): restoring or playable."""
        return self._tier_view.get()

    @property
    def status(self) -> StatusTable:
        return self._status.get()

    @property
    def webhooks(self) -> EndpointRegistry:
        return self._webhooks.get()

    @property
    def edge_health(self) -> EdgeHealth:
        return self._edge_health.get()

    @property
    def analytics(self) -> AnalyticsEngine:
        return self._analytics.get()

    def ready_status(self) -> StatusTable:
        """The status table once it caught up with the log (blocking, on a worker thread); ApiError 503
        with Retry-After when it cannot within ``STATUS_READY_TIMEOUT``."""
        table = self.status
        if not table.ready and not table.wait_ready(STATUS_READY_TIMEOUT):
            raise ApiError(503, "the status table is still catching up with the log"
                           + (f" ({table.last_error})" if table.last_error else ""),
                           {"Retry-After": STATUS_RETRY_AFTER}, code="catching_up")
        return table

    def started(self, name: str) -> bool:
        return self._part(name).started

    def _part(self, name: str) -> Part[Any]:
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; parts: {PARTS}")
        part: Part[Any] = getattr(self, f"_{name}")
        return part

    def _open_sender(self) -> AsyncEmitter:
        from framelog.streams.emitter import AsyncEmitter
        return AsyncEmitter(self.config.streams, **dict(self.ingest.producer_overrides))

    def _open_catalog(self) -> VideoCatalog:
        from framelog.views.catalog import VideoCatalog
        catalog = VideoCatalog(self.config.streams)
        catalog.dead_letter_producer = self.producer
        catalog.on_folded(self._invalidate_plans)
        catalog.start()
        return catalog

    def _open_tier_view(self) -> TierView:
        from framelog.views.tier_view import TierView
        view = TierView(self.config.streams, self.config.tiering, producer=self.producer)
        view.dead_letter_producer = self.producer
        view.on_folded(self._invalidate_plans)
        view.start()
        return view

    def _open_status(self) -> StatusTable:
        from framelog.views.status import StatusTable
        table = StatusTable(self.config.streams, self.config.pipeline.stage_names)
        table.dead_letter_producer = self.producer
        return table.start()

    def _open_webhooks(self) -> EndpointRegistry:
        from framelog.views.webhook_registry import EndpointRegistry
        registry = EndpointRegistry(self.config.streams)
        registry.dead_letter_producer = self.producer
        return registry.start()

    def _open_edge_health(self) -> EdgeHealth:
        from framelog.sinks.edges.health import EdgeHealth
        return EdgeHealth(self.config.cdn, self.config.stack.host)

    def _open_analytics(self) -> AnalyticsEngine:
        from framelog.api.analytics_engine import open_engine
        return open_engine(self.engine_settings)

    def _invalidate_plans(self, records: list[Any]) -> None:
        from framelog.streams.consumer import DecodedRecord
        videos = {(r.value.get("video_id") or r.key) for r in records if isinstance(r, DecodedRecord)}
        self.delivery_plans.invalidate(v for v in videos if v)

    # ------------------------------------------------------------ life

    def warm(self, names: Iterable[str]) -> None:
        """Build these parts now (log replays start in the background)."""
        for name in names:
            self._part(name).get()

    def close(self) -> None:
        """Close every part that was built, users of the producer before the producer."""
        for name in ("analytics", "webhooks", "status", "tier_view", "catalog", "edge_health", "sender"):
            self._part(name).close()


def engine_settings(config: Config) -> AnalyticsEngineSettings:
    """The sections the analytics engine reads (``api.analytics_engine.AnalyticsEngineSettings``)."""
    from framelog.api.analytics_engine import AnalyticsEngineSettings
    return AnalyticsEngineSettings(config.clickhouse_dsn, config.clickhouse.database, config.analytics,
                                   config.analyst_sql, config.caching, config.hls.quality_levels, config.streams)


@asynccontextmanager
async def open_services(config: Config, *, warm: Iterable[str] = (),
                        ingest: IngestSettings | None = None) -> AsyncIterator[Services]:
    """The lifespan's part: build the services, warm ``warm``, close them all at shutdown."""
    svc = await run_in_threadpool(Services, config, ingest=ingest)
    try:
        await run_in_threadpool(svc.warm, tuple(warm))
        yield svc
    finally:
        await run_in_threadpool(svc.close)


STATE_KEY = "services"


def services(request: Request) -> Services:
    """Dependency: the app's ``Services`` (put in the lifespan state by ``framelog.api.app``)."""
    found = getattr(request.state, STATE_KEY, None)
    if found is None:
        raise ApiError(503, "the API has not started (its lifespan did not run)", {"Retry-After": "1"},
                       code="not_started")
    svc: Services = found
    return svc


Svc = Annotated[Services, Depends(services)]
