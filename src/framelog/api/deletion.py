"""``DELETE /videos/{id}``: the owner deletes a video.

Order, so that a crash at any point leaves nothing playable and a retried
DELETE finishes the job:

1. ``VideoDeleted`` on ``video.uploads`` (acks=all, folded before going on):
   from here on the stream API and the key endpoint answer 404 and the
   status says ``deleted``;
2. the tombstone ``deleted/{id}`` (``framelog.pipeline.jobs.tombstones``): from here
   on the pipeline drops the video's requests, and a stage running now
   removes what it wrote when it ends (deletion wins over processing);
3. an upload still open is aborted (its multipart parts go too);
4. every object of the video goes: the raw upload (``uploads/{id}/``), the
   pipeline's work (``work/{id}/``), HLS (``hls/{id}/``), thumbnails,
   chapters and storyboard (``thumbnails/{id}/``), the AES key
   (``keys/{id}/``), analysis (``meta/{id}/``) and the optimised MP4
   (``videos/.../{id}.mp4``, the published asset's ``source_key``, or the
   one the pipeline's completion markers name when no asset was announced yet);
5. a ``CacheInvalidate`` on ``cdn.commands`` with the seed's default paths
   plus the MP4's, so the edges purge what they cached.

A video with renditions in a tier with a retention lock (deep archive:
compliance and legal retention) within their retention period cannot be
deleted: 409 naming the tier and the date. An operator (``ops`` scope) may
override with ``?retention_override=REASON``; the override is recorded on the
log in the ``VideoDeleted`` event (``requested_by`` the operator, ``reason``
``retention_override: REASON``) and also removes the locked vault copies
(GOVERNANCE retention bypassed).

Playback analytics are left alone: ClickHouse keeps the video's events and
rollups (they describe what happened). A DELETE of an already deleted video
by its owner runs steps 2-5 again (idempotent) and answers the same.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from framelog.api.access_state import AccessState, video_id_param
from framelog.api.auth import current_principal, principal_of
from framelog.api.errors import responses
from framelog.api.services import Services, Svc
from framelog.api.stream_availability import READY_TIMEOUT
from framelog.core import object_keys
from framelog.core.errors import ApiError
from framelog.pipeline.jobs import tombstones
from framelog.processors.identity import OPS
from framelog.processors.tiering import RetentionHold, deletion_hold
from framelog.processors.video_access import VideoEntry
from framelog.schemas.events import new_event
from framelog.sinks.object_store import STORE_ERRORS, vault_store
from framelog.streams import topics

log = logging.getLogger(__name__)

router = APIRouter(tags=["videos"], dependencies=[Depends(current_principal)])     # who is asking: api.auth


class Deleted(BaseModel):
    video_id: str
    state: str
    objects_removed: dict[str, int]


def _source_key(entry: VideoEntry) -> str | None:
    return tombstones.mp4_key(entry.video_id, ((entry.asset or {}).get("metadata") or {}).get("source_key"))


def _retention_hold(svc: Services, entry: VideoEntry) -> RetentionHold | None:
    """What keeps the video's renditions under a retention lock now (tiering's view of the log)."""
    names = [r["name"] for r in ((entry.asset or {}).get("renditions") or [])]
    if not names:
        return None
    view = svc.tier_view
    if not view.wait_ready(READY_TIMEOUT):
        raise ApiError(503, "storage tiers are not known yet; retry", {"Retry-After": "1"}, code="catching_up")
    records = [view.record(entry.video_id, name) for name in names]
    return deletion_hold([r.state() for r in records if r is not None], datetime.now(UTC), svc.config.tiering)


def _deleter(request: Request, state: AccessState, video_id: str, override: str) -> tuple[Any, VideoEntry, Any]:
    """(who, entry, policy): the owner, or with a retention override an operator."""
    if not override:
        return state.owned_entry(request, video_id, allow_deleted=True)
    principal = principal_of(request)
    if principal is None or not principal.has(OPS):
        raise ApiError(403, f"a retention override needs the {OPS!r} scope")
    entry, policy = state.known_entry(video_id, allow_deleted=True)
    return principal.viewer, entry, policy


def delete_video(svc: Services, request: Request, video_id: str, reason: str, override: str = "") -> dict[str, Any]:
    state = svc.access
    viewer, entry, policy = _deleter(request, state, video_id, override)
    if not entry.deleted:
        hold = _retention_hold(svc, entry)
        if hold is not None and not override:
            raise ApiError(409, f"video {video_id} cannot be deleted: it is {hold.reason}; an operator may "
                                "override with ?retention_override=REASON", code="retention_hold")
        if override:
            reason = f"retention_override: {override}" + (f" ({hold.reason})" if hold else "")
        state.emit(topics.UPLOADS, "VideoDeleted", new_event(
            "VideoDeleted", video_id=video_id, owner_id=policy.owner_id, requested_by=viewer.user_id, reason=reason))
    store = svc.store
    tombstones.mark_deleted(store, video_id, reason)
    upload = svc.uploads.inspect(video_id)
    if upload is not None and upload.status == "open" and upload.session is not None:
        svc.uploads.abandon(upload.session)
    source = _source_key(entry)
    removed = tombstones.purge_video(store, video_id, [source] if source else [])
    vault = vault_store(state.config.object_storage, state.config.stack.state_dir)
    if vault is not None:                       # locked copies: only expired ones go, unless overridden
        for prefix in object_keys.video_prefixes(video_id):
            removed[f"vault:{prefix}"] = vault.delete_locked_prefix(prefix, bypass=bool(override))
    extra_paths = tuple(object_keys.edge_path(key) for key in removed if object_keys.is_progressive_mp4(key))
    state.invalidate_edges(video_id, "video_deleted", extra_paths)
    log.info("video %s deleted by %s: %s", video_id, viewer.user_id, removed)
    return {"video_id": video_id, "state": "deleted", "objects_removed": removed}


@router.delete("/videos/{video_id}", response_model=Deleted, responses=responses(400, 401, 403, 404, 409, 503))
async def delete(video_id: str, request: Request, svc: Svc,
                 reason: str = Query("", description="why (recorded on the log)"),
                 retention_override: str = Query("", description="ops only: delete despite a retention lock, "
                                                                 "recording this reason")) -> JSONResponse:
    """The owner deletes a video (an operator may override a retention lock)."""
    video_id = video_id_param(video_id)
    try:
        out = await run_in_threadpool(delete_video, svc, request, video_id, reason[:256], retention_override[:256])
    except STORE_ERRORS as exc:        # deleted on the log, objects partly left: retry finishes
        log.warning("deleting the objects of %s: %s", video_id, exc)
        raise ApiError(503, f"video {video_id} is deleted but not all its objects are gone yet ({exc}); "
                            "retry the DELETE", {"Retry-After": "1"}, code="partly_deleted") from None
    return JSONResponse(out, headers={"Cache-Control": "no-store"})
