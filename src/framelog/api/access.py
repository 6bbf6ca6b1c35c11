"""A video's access policy and share links, managed by its owner.

    GET    /videos/{id}/access               owner: the policy and the share links
    PATCH  /videos/{id}/access               owner: {"visibility": ..., "workspace": ... | null}
    POST   /videos/{id}/share                owner: {"ttl_seconds": n} (optional) -> 201 a share token
    DELETE /videos/{id}/share/{token}        owner: revoke a link (by token id, or the token itself) -> 204

Owner-only means a token (``Authorization: Bearer``, ``api.auth``) with ``videos:write`` whose sub is the
video's owner: 401 without one, 403 for anyone else. The policy is set at
upload (``POST /videos`` with ``visibility`` and ``workspace``) and defaults to
``security.default_visibility``.

Every change is an event on ``video.access`` (see
``processors.video_access`` for why the log holds it), written with acks=all
and folded into this replica's catalog before the answer, so the next
request already sees it. Narrowing access (a revoked link; public ->
share_link/private; share_link -> private; another workspace) also puts a
``CacheInvalidate`` for the video on ``cdn.commands``, so the edges drop
what they cached for the old audience.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from framelog.api.access_state import (
    ApiError,
    access_state,
    lifespan,
    parse_visibility,
    parse_workspace,
    video_id_param,
)
from framelog.api.auth import current_principal
from framelog.processors.access import Visibility
from framelog.processors.tokens import TokenError, issue_share_token, verify_share_token
from framelog.processors.video_access import VideoEntry, VideoPolicy, narrows_access, with_changes
from framelog.schemas.events import new_event
from framelog.streams import topics

# who is asking: api.auth
router = APIRouter(tags=["access"], lifespan=lifespan, dependencies=[Depends(current_principal)])

MAX_BODY = 16 * 1024
NO_STORE = {"Cache-Control": "no-store"}


def policy_view(video_id: str, policy: VideoPolicy, entry: VideoEntry | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"video_id": video_id, "owner": policy.owner_id, "workspace": policy.workspace_id,
                           "visibility": policy.visibility.value}
    if entry is not None:
        out["share_links"] = [
            {"token_id": link.token_id, "issued_by": link.issued_by,
             "expires_at": link.expires_at_ms // 1000 if link.expires_at_ms else None,
             "revoked": link.revoked_at_ms is not None}
            for link in sorted(entry.share_links.values(), key=lambda link: link.issued_at_ms or 0)]
    return out


async def _json_body(request: Request) -> dict[str, Any]:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"body exceeds {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


async def _answer(request: Request, video_id: str, work: Callable[..., dict[str, Any] | None], *args: Any,
                  body: bool = False, status: int = 200) -> Response:
    """Run ``work(request, video_id, [body,] *args)`` in a worker thread; its dict as JSON, None as 204."""
    try:
        video_id = video_id_param(video_id)
        extra = (await _json_body(request),) if body else ()
        out = await run_in_threadpool(work, request, video_id, *extra, *args)
    except ApiError as exc:
        return exc.response()
    if out is None:
        return Response(status_code=204, headers=NO_STORE)
    return JSONResponse(out, status_code=status, headers=NO_STORE)


# ------------------------------------------------------------------ policy

def read_policy(request: Request, video_id: str) -> dict[str, Any]:
    _, entry, policy = access_state(request.app).owned_entry(request, video_id)
    return policy_view(video_id, policy, entry)


@router.get("/videos/{video_id}/access")
async def get_access(video_id: str, request: Request) -> Response:
    return await _answer(request, video_id, read_policy)


def change_policy(request: Request, video_id: str, body: dict[str, Any]) -> dict[str, Any]:
    state = access_state(request.app)
    viewer, entry, old = state.owned_entry(request, video_id)
    unknown = set(body) - {"visibility", "workspace"}
    if unknown:
        raise ApiError(400, f"unknown field(s) {sorted(unknown)}; expected visibility, workspace")
    visibility = parse_visibility(body.get("visibility")) if "visibility" in body else None
    workspace: Any = parse_workspace(body["workspace"]) if "workspace" in body else ...
    if workspace not in (..., None) and workspace not in viewer.workspaces:
        raise ApiError(403, f"you are not a member of workspace {workspace}")
    new = with_changes(old, visibility=visibility, workspace_id=workspace)
    if new != old or entry.policy is None:
        state.record_policy(video_id, new, viewer.user_id)
        if narrows_access(old, new):
            state.invalidate_edges(video_id, "access_restricted")
    return policy_view(video_id, new)


@router.patch("/videos/{video_id}/access")
async def patch_access(video_id: str, request: Request) -> Response:
    return await _answer(request, video_id, change_policy, body=True)


# ------------------------------------------------------------------ share links

def share(request: Request, video_id: str, body: dict[str, Any]) -> dict[str, Any]:
    state = access_state(request.app)
    viewer, _, policy = state.owned_entry(request, video_id)
    if policy.visibility is Visibility.PRIVATE:
        raise ApiError(409, f"video {video_id} is private: share links would not open it; "
                            "set its visibility to share_link first (PATCH /videos/{id}/access)")
    limit = state.config.security.share_token_ttl
    ttl = body.get("ttl_seconds", limit)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= limit:
        raise ApiError(400, f"ttl_seconds: expected a number of seconds in (0, {limit:g}]")
    token = issue_share_token(video_id, state.config, secret=state.secret, now=time.time(), ttl=ttl)
    state.emit(topics.ACCESS, "ShareLink", new_event(
        "ShareLink", video_id=video_id, token_id=token.token_id, action="issued",
        expires_at=token.expires_at * 1000, actor=viewer.user_id))
    return {"video_id": video_id, "token": token.token, "token_id": token.token_id, "expires_at": token.expires_at,
            "stream_path": f"/v1/stream?video_id={video_id}&share={token.token}"}


@router.post("/videos/{video_id}/share", status_code=201)
async def post_share(video_id: str, request: Request) -> Response:
    return await _answer(request, video_id, share, body=True, status=201)


def _token_id(state: Any, video_id: str, token: str) -> str:
    """A token id as given, or the id inside a share token of this video (signature checked)."""
    if "." not in token:
        return token
    try:
        claims = verify_share_token(token, secret=state.secret, now=0.0, video_id=video_id)
    except TokenError as exc:
        raise ApiError(400 if exc.reason != "wrong_video" else 404, f"share token refused: {exc.reason}") from None
    return claims.token_id


def revoke(request: Request, video_id: str, token: str) -> None:
    state = access_state(request.app)
    viewer, entry, _ = state.owned_entry(request, video_id)
    jti = _token_id(state, video_id, token)
    if jti not in entry.share_links:
        raise ApiError(404, f"video {video_id} has no share link {jti[:64]!r}")
    if entry.revoked(jti):
        return                                          # revoking twice changes nothing
    state.emit(topics.ACCESS, "ShareLink", new_event(
        "ShareLink", video_id=video_id, token_id=jti, action="revoked", expires_at=None, actor=viewer.user_id))
    state.invalidate_edges(video_id, "share_link_revoked")


@router.delete("/videos/{video_id}/share/{token}")
async def delete_share(video_id: str, token: str, request: Request) -> Response:
    return await _answer(request, video_id, revoke, token)
