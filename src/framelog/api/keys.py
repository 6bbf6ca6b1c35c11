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

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from framelog.api.access_state import ApiError, access_state
from framelog.api.auth import current_principal
from framelog.core.config import Config
from framelog.core.errors import InvalidIdError
from framelog.core.ids import validate_video_id
from framelog.core.object_keys import hls_key
from framelog.processors.public_urls import key_url as public_key_url
from framelog.processors.tokens import TokenError, load_or_create_secret, sign_playback, verify_playback
from framelog.processors.video_access import key_access
from framelog.sinks.object_store import ObjectStore

router = APIRouter(tags=["keys"], dependencies=[Depends(current_principal)])     # who is asking: api.auth

KEY_PATH = "/v1/keys/{video_id}"


def key_path(video_id: str) -> str:
    return KEY_PATH.format(video_id=validate_video_id(video_id))


def key_url(config: Config, video_id: str) -> str:
    """The key URI viewers fetch: the public key base (``delivery.key_url_base``), which the edges also
    write into the playlists they serve in place of the stored, host-less ``hls_config.key_uri_base``."""
    return public_key_url(config, video_id)


def key_grant(config: Config, video_id: str, viewer_id: str | None = None, ttl: float | None = None) -> str:
    """The query string that lets its holder fetch ``video_id``'s key until it expires."""
    return sign_playback(video_id, key_path(video_id), config, secret=load_or_create_secret(config),
                         now=time.time(), viewer_id=viewer_id, ttl=ttl)


def _access_refusal(request: Request, video_id: str, grant_viewer: str | None) -> Response | None:
    """None when the grant's basis still holds; else the refusal (401/403/404/503)."""
    state = access_state(request.app)
    try:
        viewer = state.viewer(request)
        entry, policy = state.known_entry(video_id)
    except ApiError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status,
                            headers={"Cache-Control": "no-store", **exc.headers})
    decision = key_access(entry, policy, grant_viewer, viewer)
    if not decision.allowed:
        return JSONResponse({"error": f"playback grant refused: {decision.refusal}"}, status_code=403,
                            headers={"Cache-Control": "no-store"})
    return None


@router.get(KEY_PATH)
async def get_key(request: Request, video_id: str) -> Response:
    config: Config = request.app.state.config
    try:
        validate_video_id(video_id)
    except InvalidIdError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    if "sig" not in request.query_params:
        return JSONResponse({"error": "a playback grant is required (video, prefix, exp, sig)"}, status_code=401,
                            headers={"Cache-Control": "no-store"})
    try:
        claims = verify_playback(dict(request.query_params), video_id=video_id, path=request.url.path,
                                 secret=load_or_create_secret(config), now=time.time())
    except TokenError as exc:
        return JSONResponse({"error": f"playback grant refused: {exc.reason}"}, status_code=403,
                            headers={"Cache-Control": "no-store"})
    refusal = await run_in_threadpool(_access_refusal, request, video_id, claims.viewer_id)
    if refusal is not None:
        return refusal
    store = ObjectStore(config)
    key = await run_in_threadpool(store.get_bytes, hls_key(video_id))
    if key is None:
        return JSONResponse({"error": f"video {video_id} has no published key"}, status_code=404,
                            headers={"Cache-Control": "no-store"})
    return Response(key, media_type="application/octet-stream",
                    headers={"Cache-Control": "private, no-store", "Access-Control-Allow-Origin": "*"})
