"""The AES-128 key endpoint named by every encrypted HLS playlist.

A key is handed out only with a valid playback grant for that video: the
signed, expiring parameters the stream API issues (``video``, ``prefix``,
``exp``, ``sig``, and ``viewer`` when bound; hls.js appends them to the key
request). Anything else gets 401 (no grant) or 403 (forged, expired, or
another video's grant), and the key is never cacheable.

A signature alone is not enough: on every key request the basis the grant
was issued on is checked again against the access state in force now
(``processors.video_access.key_access``). A grant bound to a signed-in viewer
needs that viewer's token (``Authorization: Bearer``) with the request; a
grant issued on a share link stops working when the link is revoked; a grant
of a public video stops working when the video is made private; a deleted
video has no key (404).
"""
from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from framelog.api.auth import current_principal
from framelog.api.errors import responses
from framelog.api.services import Services, Svc
from framelog.core.config import DeliveryConfig, SecurityConfig, StackConfig
from framelog.core.errors import ApiError
from framelog.core.ids import validate_video_id
from framelog.core.object_keys import hls_key
from framelog.processors.public_urls import key_url as public_key_url
from framelog.processors.tokens import TokenError, load_or_create_secret, sign_playback, verify_playback
from framelog.processors.video_access import key_access

router = APIRouter(tags=["keys"], dependencies=[Depends(current_principal)])     # who is asking: api.auth

KEY_PATH = "/v1/keys/{video_id}"


def key_path(video_id: str) -> str:
    return KEY_PATH.format(video_id=validate_video_id(video_id))


def key_url(delivery: DeliveryConfig, stack: StackConfig, video_id: str) -> str:
    """The key URI viewers fetch: the public key base (``delivery.key_url_base``, else derived from
    ``config.stack``), which the edges also write into the playlists they serve in place of the stored,
    host-less ``hls_config.key_uri_base``."""
    return public_key_url(delivery, stack, video_id)


def key_grant(security: SecurityConfig, stack: StackConfig, video_id: str, viewer_id: str | None = None,
              ttl: float | None = None) -> str:
    """The query string that lets its holder fetch ``video_id``'s key until it expires (signed with the
    secret of ``config.security`` / ``config.stack.state_dir``)."""
    secret = load_or_create_secret(security, stack.state_dir)
    return sign_playback(video_id, key_path(video_id), security, secret=secret,
                         now=time.time(), viewer_id=viewer_id, ttl=ttl)


def _check_access(svc: Services, request: Request, video_id: str, grant_viewer: str | None) -> None:
    """Nothing when the grant's basis still holds; else ApiError (401/403/404/503)."""
    state = svc.access
    viewer = state.viewer(request)
    entry, policy = state.known_entry(video_id)
    decision = key_access(entry, policy, grant_viewer, viewer)
    if not decision.allowed:
        raise ApiError(403, f"playback grant refused: {decision.refusal}", code="grant_refused")


@router.get(KEY_PATH, response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}}, "description": "the 16-byte AES-128 key"},
    **responses(400, 401, 403, 404, 503)})
async def get_key(request: Request, video_id: str, svc: Svc,
                  video: str | None = Query(None, description="the grant's video (from GET /v1/stream)"),
                  prefix: str | None = Query(None, description="the grant's path prefix"),
                  exp: int | None = Query(None, description="the grant's expiry, epoch seconds"),
                  viewer: str | None = Query(None, description="the viewer the grant is bound to, if any"),
                  sig: str | None = Query(None, description="the grant's signature")) -> Response:
    """The video's AES-128 key, for the holder of a playback grant whose basis still holds."""
    validate_video_id(video_id)
    if sig is None:
        raise ApiError(401, "a playback grant is required (video, prefix, exp, sig)", code="grant_required")
    try:
        claims = verify_playback(dict(request.query_params), video_id=video_id, path=request.url.path,
                                 secret=svc.secret, now=time.time())
    except TokenError as exc:
        raise ApiError(403, f"playback grant refused: {exc.reason}", code="grant_refused") from None
    await run_in_threadpool(_check_access, svc, request, video_id, claims.viewer_id)
    key = await run_in_threadpool(svc.store.get_bytes, hls_key(video_id))
    if key is None:
        raise ApiError(404, f"video {video_id} has no published key")
    return Response(key, media_type="application/octet-stream",
                    headers={"Cache-Control": "private, no-store", "Access-Control-Allow-Origin": "*"})
