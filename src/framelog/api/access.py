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

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from framelog.api.access_state import AccessState, parse_visibility, parse_workspace, video_id_param
from framelog.api.auth import current_principal
from framelog.api.errors import responses
from framelog.api.services import Svc
from framelog.core.errors import ApiError
from framelog.processors.access import Visibility
from framelog.processors.tokens import TokenError, issue_share_token, verify_share_token
from framelog.processors.video_access import VideoEntry, VideoPolicy, narrows_access, with_changes
from framelog.schemas.events import new_event
from framelog.streams import topics

# who is asking: api.auth
router = APIRouter(tags=["access"], dependencies=[Depends(current_principal)],
                   responses=responses(400, 401, 403, 404, 503))

NO_STORE = {"Cache-Control": "no-store"}
VISIBILITIES = [v.value for v in Visibility]


# ------------------------------------------------------------------ models

class ShareLinkView(BaseModel):
    token_id: str
    issued_by: str | None
    expires_at: int | None = Field(description="epoch seconds; null: no expiry of its own")
    revoked: bool


class AccessPolicyView(BaseModel):
    """A video's access policy in force (and, to its owner, its share links)."""
    video_id: str
    owner: str
    workspace: str | None
    visibility: str = Field(description=f"one of {VISIBILITIES}")
    share_links: list[ShareLinkView] | None = None


class AccessChange(BaseModel):
    """What to change: a visibility, and/or a workspace (null: none). Absent fields are kept."""
    model_config = ConfigDict(extra="forbid")
    visibility: str | None = Field(default=None, description=f"one of {VISIBILITIES}")
    workspace: str | None = Field(default=None, description="a workspace you belong to, or null for none")


class ShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_seconds: float | None = Field(default=None, gt=0, description="at most security.share_token_ttl (the default)")


class ShareCreated(BaseModel):
    video_id: str
    token: str
    token_id: str
    expires_at: int = Field(description="epoch seconds")
    stream_path: str = Field(description="GET this (with the token) to play")


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


def _json(out: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(out, status_code=status, headers=NO_STORE)


# ------------------------------------------------------------------ policy

def read_policy(state: AccessState, request: Request, video_id: str) -> dict[str, Any]:
    _, entry, policy = state.owned_entry(request, video_id)
    return policy_view(video_id, policy, entry)


@router.get("/videos/{video_id}/access", response_model=AccessPolicyView)
async def get_access(video_id: str, request: Request, svc: Svc) -> Response:
    """The owner's view of the policy and the share links."""
    return _json(await run_in_threadpool(read_policy, svc.access, request, video_id_param(video_id)))


def change_policy(state: AccessState, request: Request, video_id: str, body: AccessChange) -> dict[str, Any]:
    viewer, entry, old = state.owned_entry(request, video_id)
    given = body.model_fields_set
    visibility = parse_visibility(body.visibility) if "visibility" in given else None
    workspace: Any = parse_workspace(body.workspace) if "workspace" in given else ...
    if workspace not in (..., None) and workspace not in viewer.workspaces:
        raise ApiError(403, f"you are not a member of workspace {workspace}")
    new = with_changes(old, visibility=visibility, workspace_id=workspace)
    if new != old or entry.policy is None:
        state.record_policy(video_id, new, viewer.user_id)
        if narrows_access(old, new):
            state.invalidate_edges(video_id, "access_restricted")
    return policy_view(video_id, new)


@router.patch("/videos/{video_id}/access", response_model=AccessPolicyView)
async def patch_access(video_id: str, request: Request, svc: Svc, body: AccessChange | None = None) -> Response:
    """Change the visibility and/or the workspace; narrowing access also purges the edges."""
    return _json(await run_in_threadpool(change_policy, svc.access, request, video_id_param(video_id),
                                         body or AccessChange()))


# ------------------------------------------------------------------ share links

def share(state: AccessState, request: Request, video_id: str, body: ShareRequest) -> dict[str, Any]:
    viewer, _, policy = state.owned_entry(request, video_id)
    if policy.visibility is Visibility.PRIVATE:
        raise ApiError(409, f"video {video_id} is private: share links would not open it; "
                            "set its visibility to share_link first (PATCH /videos/{id}/access)")
    limit = state.config.security.share_token_ttl
    ttl = limit if body.ttl_seconds is None else body.ttl_seconds
    if not 0 < ttl <= limit:
        raise ApiError(400, f"ttl_seconds: expected a number of seconds in (0, {limit:g}]", code="invalid_field",
                       field="ttl_seconds")
    token = issue_share_token(video_id, state.config.security, secret=state.secret, now=time.time(), ttl=ttl)
    state.emit(topics.ACCESS, "ShareLink", new_event(
        "ShareLink", video_id=video_id, token_id=token.token_id, action="issued",
        expires_at=token.expires_at * 1000, actor=viewer.user_id))
    return {"video_id": video_id, "token": token.token, "token_id": token.token_id, "expires_at": token.expires_at,
            "stream_path": f"/v1/stream?video_id={video_id}&share={token.token}"}


@router.post("/videos/{video_id}/share", status_code=201, response_model=ShareCreated, responses=responses(409))
async def post_share(video_id: str, request: Request, svc: Svc, body: ShareRequest | None = None) -> Response:
    """Issue a share link (the video must be share_link or public)."""
    return _json(await run_in_threadpool(share, svc.access, request, video_id_param(video_id),
                                         body or ShareRequest()), 201)


def _token_id(state: AccessState, video_id: str, token: str) -> str:
    """A token id as given, or the id inside a share token of this video (signature checked)."""
    if "." not in token:
        return token
    try:
        claims = verify_share_token(token, secret=state.secret, now=0.0, video_id=video_id)
    except TokenError as exc:
        raise ApiError(400 if exc.reason != "wrong_video" else 404, f"share token refused: {exc.reason}") from None
    return claims.token_id


def revoke(state: AccessState, request: Request, video_id: str, token: str) -> None:
    viewer, entry, _ = state.owned_entry(request, video_id)
    jti = _token_id(state, video_id, token)
    if jti not in entry.share_links:
        raise ApiError(404, f"video {video_id} has no share link {jti[:64]!r}")
    if entry.revoked(jti):
        return                                          # revoking twice changes nothing
    state.emit(topics.ACCESS, "ShareLink", new_event(
        "ShareLink", video_id=video_id, token_id=jti, action="revoked", expires_at=None, actor=viewer.user_id))
    state.invalidate_edges(video_id, "share_link_revoked")


@router.delete("/videos/{video_id}/share/{token}", status_code=204, response_class=Response)
async def delete_share(video_id: str, token: str, request: Request, svc: Svc) -> Response:
    """Revoke a share link (by token id, or the token itself); revoking twice changes nothing."""
    await run_in_threadpool(revoke, svc.access, request, video_id_param(video_id), token)
    return Response(status_code=204, headers=NO_STORE)
