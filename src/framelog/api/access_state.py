"""What the access, stream, key and delete endpoints share: who is asking, and the video catalog.

Viewer identity
    ``Authorization: Bearer <JWT>`` (``api.auth``, ``processors.identity``;
    mint one with ``framelog token mint --sub USER [--workspace W]``). No
    header: anonymous. A header that does not verify (forged, expired,
    malformed): 401, never a silent downgrade to anonymous. Nothing else about
    the request (``X-User-Id``, ``owner=`` parameters, cookies) says who is asking.

Catalog
    One ``VideoCatalog`` per app (replayed from the log at start; requests
    wait, with a deadline, until it has caught up). Writes go to the log
    first (acks=all) and the request then waits until its own record is folded,
    so the next request on this replica already sees it.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from framelog.api.auth import principal_of
from framelog.core.cache import application_cache
from framelog.core.config import Config, get_config
from framelog.core.errors import InvalidIdError
from framelog.core.ids import validate_video_id
from framelog.processors.access import Viewer, Visibility
from framelog.processors.cdn_routing import invalidation_paths
from framelog.processors.identity import VIDEOS_WRITE, Principal
from framelog.processors.tokens import load_or_create_secret
from framelog.processors.video_access import VideoEntry, VideoPolicy
from framelog.schemas.events import new_event
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord
from framelog.streams.exceptions import DeliveryError
from framelog.streams.producer import Delivery, EventProducer
from framelog.views.catalog import VideoCatalog

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0            # how long a request waits for the catalog to catch up with the log
OWN_WRITE_TIMEOUT = 10.0        # how long a write waits to see itself folded
WRITE_TIMEOUT = 10.0            # how long a write waits for the broker's acknowledgement
RETRY_AFTER = "5"


class ApiError(Exception):
    """An answer other than success, raised anywhere below an endpoint."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": self.message, **self.extra}, status_code=self.status,
                            headers={"Cache-Control": "no-store", **self.headers})


def video_id_param(value: str | None) -> str:
    if not value:
        raise ApiError(400, "video_id is required")
    try:
        return validate_video_id(value)
    except InvalidIdError as exc:
        raise ApiError(400, str(exc)) from None


class AccessState:
    """The catalog, a producer for access events, and the token secret of one app."""

    def __init__(self, config: Config):
        self.config = config
        self.secret = load_or_create_secret(config)
        self._lock = threading.Lock()
        self._catalog: VideoCatalog | None = None
        self._producer: EventProducer | None = None
        self._edge_health: Any = None
        self._tier_view: Any = None
        # the seed's "Application Cache" (1 h): delivery plans by video, dropped when the catalog or the
        # tier view folds an event of the video (publish, access change, deletion, tier change)
        self.delivery_plans = application_cache(config, "delivery_plans")

    @property
    def catalog(self) -> VideoCatalog:
        with self._lock:
            if self._catalog is None:
                self._catalog = VideoCatalog(self.config)
                self._catalog.on_folded(self._invalidate_plans)
                self._catalog.start()
            return self._catalog

    @property
    def producer(self) -> EventProducer:
        with self._lock:
            return self._producer_locked()

    @property
    def edge_health(self) -> Any:
        """The edges' health probe (``framelog.sinks.edges.health.EdgeHealth``), shared by the app's requests."""
        with self._lock:
            if self._edge_health is None:
                from framelog.sinks.edges.health import EdgeHealth
                self._edge_health = EdgeHealth(self.config)
            return self._edge_health

    @property
    def tier_view(self) -> Any:
        """Storage tiers of the renditions (``streams.tier_view.TierView``): restoring or playable."""
        with self._lock:
            if self._tier_view is None:
                from framelog.views.tier_view import TierView
                self._tier_view = TierView(self.config, producer=self._producer_locked())
                self._tier_view.on_folded(self._invalidate_plans)
                self._tier_view.start()
            return self._tier_view

    def _invalidate_plans(self, records: list[Any]) -> None:
        videos = {(r.value.get("video_id") or r.key) for r in records if isinstance(r, DecodedRecord)}
        self.delivery_plans.invalidate(v for v in videos if v)

    def _producer_locked(self) -> EventProducer:
        if self._producer is None:
            self._producer = EventProducer(self.config)
        return self._producer

    def close(self) -> None:
        with self._lock:
            catalog, producer, tiers = self._catalog, self._producer, self._tier_view
            self._catalog = self._producer = self._tier_view = None
        for table in (catalog, tiers):
            if table is not None:
                table.stop()
        if producer is not None:
            try:
                producer.close(10.0)
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the access producer: %s", exc)

    # ------------------------------------------------------------ who is asking

    def viewer(self, request: Request) -> Viewer | None:
        """The signed-in viewer, None when anonymous; 401 for a token that does not verify (``api.auth``)."""
        principal = principal_of(request)
        return None if principal is None else principal.viewer

    # ------------------------------------------------------------ reading the catalog

    def entry(self, video_id: str) -> VideoEntry | None:
        """The video's catalog entry (blocking: waits for the catalog to be ready; ApiError 503 if not)."""
        catalog = self.catalog
        if not catalog.wait_ready(READY_TIMEOUT):
            raise ApiError(503, "the access catalog is still catching up with the log"
                           + (f" ({catalog.last_error})" if catalog.last_error else ""), {"Retry-After": RETRY_AFTER})
        return catalog.get(video_id)

    def known_entry(self, video_id: str, *, allow_deleted: bool = False) -> tuple[VideoEntry, VideoPolicy]:
        """An existing (and unless ``allow_deleted``, not deleted) video and its policy in force; else 404."""
        entry = self.entry(video_id)
        policy = entry.effective_policy(self.config.security.default_visibility) if entry is not None else None
        if entry is None or policy is None:
            raise ApiError(404, f"unknown video {video_id}")
        if entry.deleted and not allow_deleted:
            raise ApiError(404, f"video {video_id} was deleted")
        return entry, policy

    def check_reader(self, principal: Principal, video_id: str, privileged: tuple[str, ...]) -> None:
        """For reads about a video (its status, its analytics): its owner, a member of its workspace,
        or a principal holding one of the ``privileged`` scopes; 404 unknown (to anyone else), 403 others."""
        if any(principal.has(scope) for scope in privileged):
            return
        entry = self.entry(video_id)
        policy = entry.effective_policy(self.config.security.default_visibility) if entry is not None else None
        if policy is None:
            raise ApiError(404, f"unknown video {video_id}")
        if principal.sub != policy.owner_id and (policy.workspace_id is None
                                                 or policy.workspace_id not in principal.workspaces):
            raise ApiError(403, f"only the owner of video {video_id}, its workspace"
                           + "".join(f" or the {s!r} scope" for s in privileged) + " may see this")

    def owned_entry(self, request: Request, video_id: str, *,
                    allow_deleted: bool = False) -> tuple[Viewer, VideoEntry, VideoPolicy]:
        """For owner-only operations: 401 anonymous, 403 without videos:write, 404 unknown, 403 someone else."""
        principal = principal_of(request)
        if principal is None:
            raise ApiError(401, "sign in as the video's owner (Authorization: Bearer <token>)",
                           {"WWW-Authenticate": "Bearer"})
        if not principal.has(VIDEOS_WRITE):
            raise ApiError(403, f"managing a video needs the {VIDEOS_WRITE!r} scope")
        viewer = principal.viewer
        entry, policy = self.known_entry(video_id, allow_deleted=allow_deleted)
        if viewer.user_id != policy.owner_id:
            raise ApiError(403, f"only the owner of video {video_id} may do this")
        return viewer, entry, policy

    # ------------------------------------------------------------ writing to the log

    def emit(self, topic: str, name: str, record: Mapping[str, Any], *, wait_folded: bool = True) -> Delivery:
        """Write one event (acks=all); with ``wait_folded`` also wait until the catalog holds it."""
        try:
            delivery = self.producer.deliver(topic, name, record, record["video_id"], timeout=WRITE_TIMEOUT)
        except DeliveryError as exc:
            raise ApiError(503, f"the log did not acknowledge {name}: {exc}; retry", {"Retry-After": "1"}) from exc
        if wait_folded and topic in self.catalog.topics \
                and not self.catalog.wait_offset(delivery.topic, delivery.partition, delivery.offset,
                                                 OWN_WRITE_TIMEOUT):
            log.warning("%s of %s written at %s[%d]@%d but not yet folded", name, record["video_id"],
                        delivery.topic, delivery.partition, delivery.offset)
        return delivery

    def record_policy(self, video_id: str, policy: VideoPolicy, changed_by: str) -> Delivery:
        return self.emit(topics.ACCESS, "AccessPolicy", new_event(
            "AccessPolicy", video_id=video_id, owner_id=policy.owner_id, workspace_id=policy.workspace_id,
            visibility=policy.visibility.value, changed_by=changed_by))

    def invalidate_edges(self, video_id: str, reason: str, paths: tuple[str, ...] = ()) -> Delivery:
        """A CacheInvalidate for every edge (helper agent purges): the seed's default paths plus ``paths``."""
        return self.emit(topics.CDN_COMMANDS, "CacheInvalidate", new_event(
            "CacheInvalidate", video_id=video_id, paths=list(invalidation_paths(video_id, paths)), providers=[],
            reason=reason), wait_folded=False)


def access_state(app: Any) -> AccessState:
    state = getattr(app.state, "access_state", None)
    if state is None:
        with _STATE_LOCK:
            state = getattr(app.state, "access_state", None)
            if state is None:
                state = AccessState(getattr(app.state, "config", None) or get_config())
                app.state.access_state = state
    return state


_STATE_LOCK = threading.Lock()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = access_state(app)
    _ = state.catalog                  # start replaying now, so the first request rarely waits
    _ = state.tier_view
    try:
        yield
    finally:
        app.state.access_state = None
        await run_in_threadpool(state.close)


def parse_visibility(value: Any, default: str | None = None) -> Visibility | None:
    if value is None or value == "":
        return Visibility.parse(default) if default else None
    try:
        return Visibility.parse(value)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def parse_workspace(value: Any) -> str | None:
    from framelog.api.upload_protocol import ProtocolError, clean_owner

    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, "workspace: expected a string")
    try:
        return clean_owner(value)
    except ProtocolError:
        raise ApiError(400, f"workspace {value!r}: expected 1-128 characters of [A-Za-z0-9_.@:-]") from None
