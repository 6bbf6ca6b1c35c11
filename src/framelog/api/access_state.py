"""What the access, stream, key and delete endpoints share: who is asking, and the video catalog.

Viewer identity
    ``Authorization: Bearer <JWT>`` (``api.auth``, ``processors.identity``;
    mint one with ``framelog token mint --sub USER [--workspace W]``). No
    header: anonymous. A header that does not verify (forged, expired,
    malformed): 401, never a silent downgrade to anonymous. Nothing else about
    the request (``X-User-Id``, ``owner=`` parameters, cookies) says who is asking.

Catalog
    The app's ``VideoCatalog`` (``Services.catalog``: replayed from the log at
    start; requests wait, with a deadline, until it has caught up). Writes go to the log
    first (acks=all) and the request then waits until its own record is folded,
    so the next request on this replica already sees it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import Request

from framelog.api.auth import principal_of
from framelog.core.errors import ApiError, InvalidIdError
from framelog.core.ids import validate_video_id
from framelog.processors.access import Viewer, Visibility
from framelog.processors.cdn_routing import invalidation_paths
from framelog.processors.identity import VIDEOS_WRITE, Principal
from framelog.processors.video_access import VideoEntry, VideoPolicy
from framelog.schemas.events import new_event
from framelog.streams import topics
from framelog.streams.exceptions import DeliveryError
from framelog.streams.producer import Delivery

if TYPE_CHECKING:
    from framelog.api.services import Services

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0            # how long a request waits for the catalog to catch up with the log
OWN_WRITE_TIMEOUT = 10.0        # how long a write waits to see itself folded
WRITE_TIMEOUT = 10.0            # how long a write waits for the broker's acknowledgement
RETRY_AFTER = "5"


def video_id_param(value: str | None) -> str:
    if not value:
        raise ApiError(400, "video_id is required", code="invalid_id", field="video_id")
    try:
        return validate_video_id(value)
    except InvalidIdError as exc:
        raise ApiError(400, str(exc), code="invalid_id", field="video_id") from None


class AccessState:
    """Who may do what to a video: the catalog's questions and the access events, over the app's services."""

    def __init__(self, services: Services):
        self.services = services
        self.config = services.config
        self.secret = services.secret

    @property
    def catalog(self) -> Any:
        return self.services.catalog

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
                           + (f" ({catalog.last_error})" if catalog.last_error else ""), {"Retry-After": RETRY_AFTER},
                           code="catching_up")
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
            delivery = self.services.producer.deliver(topic, name, record, record["video_id"],
                                                      timeout=WRITE_TIMEOUT)
        except DeliveryError as exc:
            raise ApiError(503, f"the log did not acknowledge {name}: {exc}; retry", {"Retry-After": "1"},
                           code="log_unavailable") from exc
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


def parse_visibility(value: Any, default: str | None = None) -> Visibility | None:
    if value is None or value == "":
        return Visibility.parse(default) if default else None
    try:
        return Visibility.parse(value)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="invalid_field", field="visibility") from None


def parse_workspace(value: Any) -> str | None:
    from framelog.api.upload_protocol import clean_owner

    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, "workspace: expected a string", code="invalid_field", field="workspace")
    try:
        return clean_owner(value)
    except ApiError:
        raise ApiError(400, f"workspace {value!r}: expected 1-128 characters of [A-Za-z0-9_.@:-]",
                       code="invalid_field", field="workspace") from None
