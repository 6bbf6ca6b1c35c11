"""Videos: tus 1.0.0 resumable uploads into object storage, and status from the stage-transition log.

The protocol is ``upload_protocol`` (core, creation, termination, checksum);
the upload service behind it is ``framelog.sinks.upload_sessions`` (object
storage only, so any replica or a restarted API continues any upload).

    OPTIONS /videos, /videos/{id}/upload   Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm
    POST    /videos                 Upload-Length, Upload-Metadata -> 201, Location
                                    (visibility, workspace, priority: query or metadata; see initial_policy)
    HEAD    /videos/{id}/upload     -> Upload-Offset, Upload-Length
    PATCH   /videos/{id}/upload     Upload-Offset + a body of any size -> 204, Upload-Offset
    DELETE  /videos/{id}/upload     termination -> 204
    GET     /videos/{id}            status: state, current stage, per-stage progress and errors

A PATCH body streams into S3 multipart parts as it arrives (memory: one part
per upload); when the last byte lands the upload is completed, hashed and
announced with UploadCompleted before the 204 is sent, so processing starts.
One PATCH at a time per upload in a process (423 to a second one).

Who: creating an upload needs a token with ``videos:write`` (``api.auth``);
its ``sub`` is the owner. An upload is bound to that owner: HEAD, PATCH and
DELETE by anyone else answer 404, exactly as for an upload that does not
exist. With ``auth.anonymous_upload`` on, a request without a token gets a
fresh anonymous owner and an ``upload_token`` for that upload alone (in the
201's body). The status is for the owner, the video's workspace,
``analytics:read`` and ``ops``.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from framelog.api.access_state import parse_visibility, parse_workspace
from framelog.api.auth import current_principal, principal_of
from framelog.api.errors import responses
from framelog.api.services import Services, Svc
from framelog.api.upload_protocol import (
    CHECKSUM_ALGORITHMS,
    CHECKSUM_MISMATCH,
    TUS_EXTENSIONS,
    TUS_RESUMABLE,
    TUS_VERSIONS,
    Checksum,
    ProtocolError,
    check_offset_content_type,
    check_tus_resumable,
    clean_content_type,
    clean_filename,
    clean_owner,
    encode_upload_metadata,
    parse_non_negative,
    parse_upload_checksum,
    parse_upload_length,
    parse_upload_metadata,
    parse_upload_offset,
    upload_path,
)
from framelog.api.video_models import UploadCreated, VideoStatus
from framelog.core.config import UploadLimits
from framelog.core.errors import ApiError, InvalidIdError
from framelog.core.ids import new_event_id, validate_video_id
from framelog.processors.identity import ANALYTICS_READ, OPS, VIDEOS_WRITE, Principal, mint_token
from framelog.processors.video_access import VideoPolicy
from framelog.sinks.upload_sessions import PartWriter, UploadView

log = logging.getLogger(__name__)

SPOOL_READ = 1024 * 1024


router = APIRouter(tags=["videos"], dependencies=[Depends(current_principal)],
                   responses=responses(400, 401, 403, 404, 409, 412, 413, 415, 423, 460, 503))


# ------------------------------------------------------------------ documentation (OpenAPI)

def _header(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "schema": {"type": "string"},
            "description": description}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": description}


TUS_HEADER = _header("Tus-Resumable", f"the protocol version, {TUS_RESUMABLE}", required=True)
CREATE_PARAMETERS = [   # what POST /videos reads (the route parses the headers itself: tus rules, exact errors)
    _header("Upload-Length", "the size of the upload in bytes", required=True),
    _header("Upload-Metadata", "tus metadata: comma-separated `key base64(value)` pairs (filename, filetype, "
                               "visibility, workspace, priority, owner)"),
    TUS_HEADER,
    _query("filename", "the original file name (else metadata)"),
    _query("content_type", "type/subtype (else metadata, else guessed from the name)"),
    _query("owner", "may only repeat the token's own sub"),
    _query("workspace", "a workspace of the token's"),
    _query("visibility", "public, share_link or private (default: security.default_visibility)"),
    _query("priority", "a processing_priorities level (default: the workspace's)"),
]
CHUNK_PARAMETERS = [_header("Upload-Offset", "where this body starts", required=True),
                    _header("Content-Type", "application/offset+octet-stream", required=True),
                    _header("Upload-Checksum", f"`algorithm base64(digest)`; algorithms: {CHECKSUM_ALGORITHMS}"),
                    TUS_HEADER]
CHUNK_BODY: dict[str, Any] = {"required": True, "content": {"application/offset+octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}
OVERRIDE_PARAMETERS = [_header("X-HTTP-Method-Override", "PATCH, DELETE or HEAD", required=True), TUS_HEADER]
NO_CONTENT: dict[int | str, dict[str, Any]] = {
    204: {"description": "done; the tus headers say where the upload stands"}}


# ------------------------------------------------------------------ helpers

def _tus(headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"Tus-Resumable": TUS_RESUMABLE, **(headers or {})}


def _error(status: int, message: str, headers: dict[str, str] | None = None, **fields: Any) -> ApiError:
    """An upload refusal: the API's ApiError with the tus header every upload answer carries."""
    return ApiError(status, message, _tus(headers), **fields)


def _offset_headers(offset: int, length: int | None = None) -> dict[str, str]:
    headers = _tus({"Upload-Offset": str(offset), "Cache-Control": "no-store"})
    if length is not None:
        headers["Upload-Length"] = str(length)
    return headers


def _version_error(exc: ApiError) -> ApiError:
    """A protocol refusal (412 also names the versions spoken); any other ApiError gets the tus header."""
    headers = {"Tus-Version": ",".join(TUS_VERSIONS)} if exc.status == 412 else {}
    exc.headers = _tus({**exc.headers, **headers})
    return exc


# ------------------------------------------------------------------ upload endpoints

def _capabilities(limits: UploadLimits) -> dict[str, str]:
    return _tus({"Tus-Version": ",".join(TUS_VERSIONS), "Tus-Extension": ",".join(TUS_EXTENSIONS),
                 "Tus-Max-Size": str(limits.max_size),
                 "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS)})


@router.options("/videos", status_code=204, response_class=Response, responses=NO_CONTENT)
def upload_options(svc: Svc) -> Response:
    """tus discovery: versions, extensions, the size limit and the checksum algorithms (no credentials)."""
    return Response(status_code=204, headers=_capabilities(svc.uploads.settings.upload_limits))


@router.options("/videos/{video_id}/upload", status_code=204, response_class=Response, responses=NO_CONTENT)
def upload_url_options(video_id: str, svc: Svc) -> Response:
    """tus discovery at an upload's URL (the same answer)."""
    return Response(status_code=204, headers=_capabilities(svc.uploads.settings.upload_limits))


ANONYMOUS_PREFIX = "anon-"


@dataclass(frozen=True)
class Uploader:
    """Who creates an upload: the owner recorded, and the token an anonymous uploader gets back."""
    owner: str
    upload_token: str | None = None


def uploader(svc: Services, request: Request, named_owner: str | None, workspace: str | None) -> Uploader:
    """The owner of a new upload: the token's ``sub``, never a request parameter.

    ``owner`` (query or metadata) may only repeat the token's own ``sub``; a
    workspace must be one of the token's. Without a token: 401, unless
    ``auth.anonymous_upload`` is on, and then the upload may name neither an
    owner nor a workspace and belongs to a fresh anonymous id.
    """
    config = svc.config
    principal = principal_of(request)
    if principal is None:
        if not config.auth.anonymous_upload:
            raise ApiError(401, "sign in to upload (Authorization: Bearer <token> with videos:write)",
                           {"WWW-Authenticate": "Bearer"})
        if named_owner or workspace:
            raise ApiError(403, "an anonymous upload cannot name an owner or a workspace")
        owner = ANONYMOUS_PREFIX + new_event_id()[:24]
        token = mint_token(config.auth, svc.verifier.keyring, owner, scopes=[VIDEOS_WRITE],
                           ttl=config.auth.anonymous_upload_ttl)
        return Uploader(owner, token)
    if not principal.has(VIDEOS_WRITE):
        raise ApiError(403, f"uploading needs the {VIDEOS_WRITE!r} scope")
    if named_owner and named_owner != principal.sub:
        raise ApiError(403, f"you are {principal.sub}; you cannot upload as {named_owner}")
    return Uploader(principal.sub)


def initial_policy(svc: Services, request: Request, owner: str, visibility: str | None,
                   workspace: str | None) -> VideoPolicy:
    """The policy a new upload starts with: its owner, a workspace the owner belongs to, a visibility."""
    principal = principal_of(request)
    ws = parse_workspace(workspace)
    if ws is not None and (principal is None or ws not in principal.workspaces):
        raise ApiError(403, f"you are not a member of workspace {ws}")
    vis = parse_visibility(visibility, svc.config.security.default_visibility)
    assert vis is not None
    return VideoPolicy(owner, ws, vis)


@router.post("/videos", status_code=201, response_model=UploadCreated,
             openapi_extra={"parameters": CREATE_PARAMETERS})
async def create_video_upload(request: Request, svc: Svc) -> Response:
    """tus creation: ``Upload-Length`` (and ``Upload-Metadata``) -> 201 with ``Location``."""
    try:
        if request.headers.get("upload-defer-length") is not None:
            raise ProtocolError(400, "Upload-Defer-Length is not supported: send Upload-Length")
        length = parse_upload_length(request.headers.get("upload-length"), svc.config.upload_limits.max_size)
        meta = parse_upload_metadata(request.headers.get("upload-metadata"))
        q = request.query_params
        filename = clean_filename(q.get("filename") or meta.get("filename"))
        content_type = clean_content_type(q.get("content_type") or meta.get("content_type") or meta.get("filetype"),
                                          filename)
        named_owner = q.get("owner") or meta.get("owner")
        if named_owner:
            clean_owner(named_owner)
        workspace = q.get("workspace") or meta.get("workspace")
        who = await run_in_threadpool(uploader, svc, request, named_owner, workspace)
        policy = await run_in_threadpool(initial_policy, svc, request, who.owner,
                                         q.get("visibility") or meta.get("visibility"), workspace)
        check_tus_resumable(request.headers.get("tus-resumable"))      # after the caller is known (401 first)
    except ApiError as exc:
        raise _version_error(exc) from None
    try:                                # the request's processing priority, else its workspace's
        priority = svc.config.priorities.resolve(q.get("priority") or meta.get("priority"), policy.workspace_id)
    except ValueError as exc:
        raise _error(400, str(exc), code="invalid_field", field="priority") from None
    uploads = svc.uploads
    session = await run_in_threadpool(uploads.create, length, filename, content_type, policy.owner_id, priority)
    try:
        await run_in_threadpool(svc.access.record_policy, session.video_id, policy, policy.owner_id)
    except Exception as exc:  # noqa: BLE001 - no policy on the log: no upload either
        log.warning("upload %s: access policy not recorded (%s); abandoning it", session.video_id, exc)
        await run_in_threadpool(uploads.abandon, session)
        raise _error(503, "the access policy could not be written to the log; retry", {"Retry-After": "1"},
                     code="log_unavailable") from None
    location = upload_path(session.video_id)
    body: dict[str, Any] = {"video_id": session.video_id, "upload_url": location, "upload_offset": 0,
                            "upload_length": length, "owner": policy.owner_id}
    if who.upload_token:
        body["upload_token"] = who.upload_token        # the only credential for this anonymous upload
    return JSONResponse(body, status_code=201,
                        headers={**_offset_headers(0, length), "Location": location, "Video-Id": session.video_id})


def own_upload(svc: Services, video_id: str, principal: Principal) -> UploadView | None:
    """The upload if ``principal`` created it; None when it does not exist or belongs to someone else
    (the same answer, so nobody learns which uploads exist)."""
    view = svc.uploads.inspect(video_id)
    return view if view is not None and view.owner == principal.sub else None


def settle(svc: Services, view: UploadView) -> UploadView:
    """An upload whose every byte is stored but that was not announced (its last request died before
    completion): complete and announce it now, so a client told "offset = length" is right."""
    if view.status == "completing" and view.session is not None:
        view.receipt = svc.uploads.finish(view.session, None)
        view.status = "completed"
    elif view.status == "open" and view.offset == view.length:
        writer = svc.uploads.writer(view)
        writer.load()
        writer.close()
        assert view.session is not None
        view.receipt = svc.uploads.finish(view.session, writer.parts)
        view.status = "completed"
    return view


def _signed_in(request: Request) -> Principal:
    principal = principal_of(request)
    if principal is None:
        raise _error(401, "sign in as the uploader (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"})
    return principal


def _upload_request(video_id: str, request: Request) -> Principal:
    """What HEAD, PATCH and DELETE check first: the id (400), the caller (401), the version (412).
    (The API's handler answers a HEAD without a body.)"""
    try:
        validate_video_id(video_id)
    except InvalidIdError as exc:
        raise _error(400, str(exc), code="invalid_id", field="video_id") from None
    principal = _signed_in(request)
    try:
        check_tus_resumable(request.headers.get("tus-resumable"))
    except ProtocolError as exc:
        raise _version_error(exc) from None
    return principal


@router.head("/videos/{video_id}/upload", response_class=Response, openapi_extra={"parameters": [TUS_HEADER]},
             responses={200: {"description": "Upload-Offset, Upload-Length, Upload-Status, Upload-Metadata"}})
async def upload_offset(video_id: str, request: Request, svc: Svc) -> Response:
    """tus HEAD: the offset object storage holds durably."""
    principal = _upload_request(video_id, request)
    view = await run_in_threadpool(own_upload, svc, video_id, principal)
    if view is None:
        raise _error(404, f"no upload for video {video_id}")
    if view.offset == view.length and view.status != "completed":
        async with _lock(svc, video_id):
            view = await run_in_threadpool(settle, svc, view)
    headers = _offset_headers(view.offset, view.length)
    headers["Upload-Status"] = view.status
    metadata = upload_metadata(view)
    if metadata:
        headers["Upload-Metadata"] = metadata           # tus: a HEAD of an upload with metadata carries it
    return Response(status_code=200, headers=headers)


def upload_metadata(view: UploadView) -> str:
    """The upload's ``filename`` and ``filetype`` as tus metadata (from the session or the receipt)."""
    source: dict[str, Any] = dict(view.receipt or {})
    if view.session is not None:
        source = {"filename": view.session.filename, "content_type": view.session.content_type}
    pairs = {"filename": source.get("filename") or "", "filetype": source.get("content_type") or ""}
    return encode_upload_metadata({k: v for k, v in pairs.items() if v})


def _lock(svc: Services, video_id: str) -> asyncio.Lock:
    lock = svc.upload_locks.get(video_id)
    if lock is None:
        lock = svc.upload_locks[video_id] = asyncio.Lock()
    return lock


@router.patch("/videos/{video_id}/upload", status_code=204, response_class=Response, responses=NO_CONTENT,
              openapi_extra={"parameters": CHUNK_PARAMETERS, "requestBody": CHUNK_BODY})
async def append_chunk(video_id: str, request: Request, svc: Svc) -> Response:
    """tus PATCH: the body, of any size, lands at ``Upload-Offset``; 204 with the new offset."""
    principal = _upload_request(video_id, request)
    check_offset_content_type(request.headers.get("content-type"))
    offset = parse_upload_offset(request.headers.get("upload-offset"))
    declared_header = request.headers.get("content-length")
    declared = parse_non_negative(declared_header, "Content-Length") if declared_header is not None else None
    checksum = parse_upload_checksum(request.headers.get("upload-checksum"))
    lock = _lock(svc, video_id)
    if lock.locked():
        raise _error(423, f"another request is writing to the upload of {video_id}; retry after it ends",
                      {"Retry-After": "1"})
    async with lock:
        return await _append(svc, video_id, principal, request, offset, declared, checksum)


async def _append(svc: Services, video_id: str, principal: Principal, request: Request, offset: int,
                  declared: int | None, checksum: Checksum | None) -> Response:
    view = await run_in_threadpool(own_upload, svc, video_id, principal)
    if view is None:
        raise _error(404, f"no upload for video {video_id}")
    if view.status != "open" or view.offset == view.length:
        view = await run_in_threadpool(settle, svc, view)
        if offset == view.length and not declared:          # a retried final PATCH: the same answer
            return Response(status_code=204, headers={**_offset_headers(view.length), "Video-Id": video_id})
        raise _error(409, f"Upload-Offset {offset}: the upload is complete at {view.length} bytes",
                      _offset_headers(view.length, view.length))
    if offset != view.offset:
        raise _error(409, f"Upload-Offset {offset} does not match the upload's offset {view.offset}",
                      _offset_headers(view.offset, view.length))
    if declared is not None and declared > view.length - offset:
        raise _error(413, f"a body of {declared} bytes at offset {offset} overruns Upload-Length {view.length}",
                      _offset_headers(view.offset, view.length))
    writer = svc.uploads.writer(view)
    await run_in_threadpool(writer.load)
    if checksum is not None:
        failure = await _append_checked(svc, request, writer, checksum)
    else:
        failure = await _append_stream(request, writer)
    new_offset = await run_in_threadpool(writer.close)
    if failure is not None:
        raise _error(failure.status, failure.message, _offset_headers(new_offset, view.length), code=failure.code)
    if writer.complete:
        assert view.session is not None
        await run_in_threadpool(svc.uploads.finish, view.session, writer.parts)
    return Response(status_code=204, headers={**_offset_headers(new_offset), "Video-Id": video_id})


async def _append_stream(request: Request, writer: PartWriter) -> ProtocolError | None:
    """Feed the body into ``writer`` part by part; what arrived before a disconnect is kept."""
    try:
        async for piece in request.stream():
            if not piece:
                continue
            if len(piece) > writer.remaining:
                return ProtocolError(413, f"the body overruns Upload-Length {writer.length}")
            if writer.add(piece):
                await run_in_threadpool(writer.flush)
    except ClientDisconnect:
        log.info("upload %s: the client went away at offset %d", writer.session.video_id, writer.offset)
        return ProtocolError(400, "the client went away before the body was complete")
    return None


async def _append_checked(svc: Services, request: Request, writer: PartWriter,
                          checksum: Checksum) -> ProtocolError | None:
    """A body with ``Upload-Checksum``: spooled to disk (at most ``upload_limits.checksum_body_max``)
    and checked before any of it lands; a mismatch discards it all (460)."""
    limit = min(svc.config.upload_limits.checksum_body_max, writer.remaining)
    svc.spool_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="chunk-", dir=svc.spool_dir)
    path = Path(name)
    try:
        hasher = checksum.hasher()
        size = 0
        with os.fdopen(fd, "wb") as out:
            try:
                async for piece in request.stream():
                    size += len(piece)
                    if size > limit:
                        return ProtocolError(413, f"a body with Upload-Checksum may have at most {limit} bytes here")
                    hasher.update(piece)
                    out.write(piece)
            except ClientDisconnect:
                return ProtocolError(400, "the client went away before the body was complete (nothing kept)")
        if not hmac.compare_digest(hasher.digest(), checksum.digest):
            return ProtocolError(CHECKSUM_MISMATCH, f"Upload-Checksum {checksum.algorithm} does not match the body; "
                                                    "the chunk was discarded")
        await run_in_threadpool(_feed_file, writer, path)
        return None
    finally:
        path.unlink(missing_ok=True)


def _feed_file(writer: PartWriter, path: Path) -> None:
    with path.open("rb") as f:
        while piece := f.read(SPOOL_READ):
            if writer.add(piece):
                writer.flush()


@router.delete("/videos/{video_id}/upload", status_code=204, response_class=Response, responses=NO_CONTENT,
               openapi_extra={"parameters": [TUS_HEADER]})
async def abandon(video_id: str, request: Request, svc: Svc) -> Response:
    """tus termination: the multipart upload is aborted and the session forgotten."""
    principal = _upload_request(video_id, request)
    async with _lock(svc, video_id):
        view = await run_in_threadpool(own_upload, svc, video_id, principal)
        if view is None:
            raise _error(404, f"no upload for video {video_id}")
        if view.status != "open" or view.session is None:
            raise _error(409, f"the upload of video {video_id} is already complete")
        await run_in_threadpool(svc.uploads.abandon, view.session)
    return Response(status_code=204, headers=_tus())


@router.post("/videos/{video_id}/upload", status_code=204, response_class=Response,
             responses={**NO_CONTENT, **responses(405)},
             openapi_extra={"parameters": OVERRIDE_PARAMETERS, "requestBody": {**CHUNK_BODY, "required": False}})
async def method_override(video_id: str, request: Request, svc: Svc) -> Response:
    """tus: a client behind a proxy that knows only GET and POST sends ``X-HTTP-Method-Override``."""
    method = (request.headers.get("x-http-method-override") or "").upper()
    if method == "PATCH":
        return await append_chunk(video_id, request, svc)
    if method == "DELETE":
        return await abandon(video_id, request, svc)
    if method == "HEAD":
        return await upload_offset(video_id, request, svc)
    raise _error(405, "POST to an upload URL needs X-HTTP-Method-Override: PATCH, DELETE or HEAD")


# ------------------------------------------------------------------ status

@router.get("/videos/{video_id}", response_model=VideoStatus)
async def video_status(video_id: str, request: Request, svc: Svc) -> Response:
    """Where a video stands: its stage transitions, or before the first one, its upload."""
    validate_video_id(video_id)
    principal = _signed_in(request)
    await run_in_threadpool(svc.access.check_reader, principal, video_id, (ANALYTICS_READ, OPS))
    table = await run_in_threadpool(svc.ready_status)
    view = table.get(video_id)
    if view is not None:
        return JSONResponse(view, headers={"Cache-Control": "no-store"})
    upload = await run_in_threadpool(svc.uploads.status_view, video_id)     # no transition yet: uploading?
    if upload is None:
        raise ApiError(404, f"unknown video {video_id}")
    return JSONResponse(upload, headers={"Cache-Control": "no-store"})
