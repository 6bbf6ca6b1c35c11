"""Videos: resumable uploads into object storage, and status from the stage-transition log.

Upload (tus-like, see ``upload_protocol``), stateless in this process: the
session lives in ``uploads/{id}/_session.json`` and the offset is the sum of
the S3 multipart parts, so any replica, or a restarted API, continues any
upload.

    POST   /videos                 Upload-Length, Upload-Metadata -> 201, Location, Upload-Offset: 0
                                   (visibility, workspace, priority: query or metadata; see initial_policy)
    HEAD   /videos/{id}/upload     -> Upload-Offset, Upload-Length
    PATCH  /videos/{id}/upload     Upload-Offset + a chunk -> 204 Upload-Offset, or 200 + result when complete
    DELETE /videos/{id}/upload     abandon an open upload
    GET    /videos/{id}            status: state, current stage, per-stage progress and errors

Who: creating an upload needs a token with ``videos:write`` (``api.auth``);
its ``sub`` is the owner. An upload session is bound to that owner: HEAD,
PATCH and DELETE by anyone else answer 404, exactly as for an upload that does
not exist. With ``auth.anonymous_upload`` on, a request without a token gets a
fresh anonymous owner and an ``upload_token`` for that upload alone. The status
is for the owner, the video's workspace, ``analytics:read`` and ``ops``.

Completion: complete the multipart upload, check the size, hash the object by
streaming it back, emit UploadCompleted (acks=all, acknowledged), write a
receipt (``uploads/{id}/_receipt.json``), delete the session. A retried final
PATCH finds the session gone and answers the receipt: nothing is emitted twice.
If the API dies between emitting and deleting the session, the retry emits
the event again with the same event_id (fixed in the session), which
consumers drop as a duplicate.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from framelog.api.access_state import ApiError, access_state, parse_visibility, parse_workspace
from framelog.api.auth import current_principal, principal_of, verifier
from framelog.api.upload_protocol import (
    MAX_CHUNK_SIZE,
    TUS_RESUMABLE,
    ProtocolError,
    UploadSession,
    check_chunk_size,
    check_offset_content_type,
    clean_content_type,
    clean_filename,
    clean_owner,
    offset_of_parts,
    parse_non_negative,
    parse_upload_length,
    parse_upload_metadata,
    parse_upload_offset,
    plan_chunk,
    upload_path,
)
from framelog.core.config import Config
from framelog.core.errors import InvalidIdError
from framelog.core.ids import new_event_id, new_video_id, validate_video_id
from framelog.processors.identity import ANALYTICS_READ, OPS, VIDEOS_WRITE, Principal, mint_token
from framelog.processors.video_access import VideoPolicy
from framelog.sinks.s3 import s3_client
from framelog.sinks.uploads import announce_upload, object_sha256, raw_object_key
from framelog.views.status import StatusTable

log = logging.getLogger(__name__)

STATUS_READY_TIMEOUT = 10.0      # how long a status request waits for the table to catch up
STATUS_RETRY_AFTER = "5"
SPOOL_WRITE = 1024 * 1024


# ------------------------------------------------------------------ per-app services

class VideoServices:
    """The S3 client, producer and status table one app shares (created on first use, closed at shutdown)."""

    def __init__(self, config: Config):
        self.config = config
        self.bucket = config.object_storage.bucket
        self._lock = threading.Lock()
        self._s3: Any = None
        self._producer: Any = None
        self._status: StatusTable | None = None
        self.spool_dir = Path(config.stack.state_dir) / "api-spool"

    @property
    def s3(self) -> Any:
        with self._lock:
            if self._s3 is None:
                self._s3 = s3_client(self.config, read_timeout=300.0)
            return self._s3

    @property
    def producer(self) -> Any:
        with self._lock:
            if self._producer is None:
                from framelog.streams.producer import EventProducer
                self._producer = EventProducer(self.config)
            return self._producer

    @property
    def status(self) -> StatusTable:
        with self._lock:
            if self._status is None:
                self._status = StatusTable(self.config).start()
            return self._status

    def close(self) -> None:
        with self._lock:
            status, producer = self._status, self._producer
            self._status = self._producer = None
        if status is not None:
            status.stop()
        if producer is not None:
            try:
                producer.close(10.0)
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the upload producer: %s", exc)


def services(app: Any) -> VideoServices:
    svc = getattr(app.state, "video_services", None)
    if svc is None:
        from framelog.core.config import get_config
        svc = VideoServices(getattr(app.state, "config", None) or get_config())
        app.state.video_services = svc
    return svc


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    svc = services(app)
    _ = svc.status                   # start replaying now, so the first status request rarely waits
    try:
        yield
    finally:
        await run_in_threadpool(svc.close)
        access = getattr(app.state, "access_state", None)     # started by POST /videos (its access policy)
        if access is not None:
            app.state.access_state = None
            await run_in_threadpool(access.close)


router = APIRouter(tags=["videos"], lifespan=lifespan, dependencies=[Depends(current_principal)])


# ------------------------------------------------------------------ helpers

def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status,
                        headers={"Tus-Resumable": TUS_RESUMABLE, **(headers or {})})


def _s3_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def session_key(video_id: str) -> str:
    return f"uploads/{validate_video_id(video_id)}/_session.json"


def receipt_key(video_id: str) -> str:
    return f"uploads/{validate_video_id(video_id)}/_receipt.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _get_json(svc: VideoServices, key: str) -> bytes | None:
    try:
        return svc.s3.get_object(Bucket=svc.bucket, Key=key)["Body"].read()
    except Exception as exc:
        if _s3_code(exc) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def _put_json(svc: VideoServices, key: str, data: bytes) -> None:
    svc.s3.put_object(Bucket=svc.bucket, Key=key, Body=data, ContentType="application/json")


def _object_size(svc: VideoServices, key: str) -> int | None:
    try:
        return int(svc.s3.head_object(Bucket=svc.bucket, Key=key)["ContentLength"])
    except Exception as exc:
        if _s3_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _list_parts(svc: VideoServices, session: UploadSession) -> list[dict[str, Any]] | None:
    """All parts of the open multipart upload, or None when it no longer exists (completed or aborted)."""
    parts: list[dict[str, Any]] = []
    marker = 0
    while True:
        try:
            page = svc.s3.list_parts(Bucket=svc.bucket, Key=session.object_key, UploadId=session.upload_id,
                                     PartNumberMarker=marker, MaxParts=1000)
        except Exception as exc:
            if _s3_code(exc) == "NoSuchUpload":
                return None
            raise
        got = page.get("Parts") or []
        parts.extend({"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p["Size"]} for p in got)
        if not page.get("IsTruncated") or not got:
            return parts
        marker = int(page.get("NextPartNumberMarker") or got[-1]["PartNumber"])


@dataclass
class UploadView:
    """Where one upload stands, read from object storage alone."""
    video_id: str
    status: str                         # open | completing | completed
    offset: int
    length: int
    session: UploadSession | None = None
    parts: list[dict[str, Any]] | None = None
    receipt: dict[str, Any] | None = None


def inspect_upload(svc: VideoServices, video_id: str) -> UploadView | None:
    """None when there is no such upload (never created, abandoned, or lost)."""
    raw = _get_json(svc, session_key(video_id))
    if raw is not None:
        session = UploadSession.from_json(raw)
        parts = _list_parts(svc, session)
        if parts is not None:
            return UploadView(video_id, "open", offset_of_parts(parts), session.length, session, parts)
        size = _object_size(svc, session.object_key)   # completed by S3, not yet announced: finish it
        if size == session.length:
            return UploadView(video_id, "completing", size, session.length, session)
        return None
    raw = _get_json(svc, receipt_key(video_id))
    if raw is not None:
        receipt = json.loads(raw)
        return UploadView(video_id, "completed", receipt["size_bytes"], receipt["size_bytes"], receipt=receipt)
    size = _object_size(svc, raw_object_key(video_id))  # e.g. an upload of `upload_file` (no receipt)
    if size is not None:
        return UploadView(video_id, "completed", size, size,
                          receipt={"video_id": video_id, "object_key": raw_object_key(video_id), "size_bytes": size})
    return None


def create_upload(svc: VideoServices, length: int, filename: str, content_type: str, owner: str,
                  priority: str = "") -> UploadSession:
    video_id = new_video_id()
    key = raw_object_key(video_id)
    metadata = {"owner-id": owner}
    if filename:
        metadata["original-filename"] = quote(filename, safe=" ._-()[]")[:1024]
    upload_id = svc.s3.create_multipart_upload(Bucket=svc.bucket, Key=key, ContentType=content_type,
                                               Metadata=metadata)["UploadId"]
    session = UploadSession(video_id=video_id, object_key=key, upload_id=upload_id, length=length,
                            filename=filename, content_type=content_type, owner=owner, created=_now(),
                            event_id=new_event_id(), priority=priority)
    try:
        _put_json(svc, session_key(video_id), session.to_json())
    except Exception:
        svc.s3.abort_multipart_upload(Bucket=svc.bucket, Key=key, UploadId=upload_id)
        raise
    return session


def upload_part(svc: VideoServices, session: UploadSession, part_number: int, path: Path, size: int,
                md5: bytes) -> dict[str, Any]:
    with path.open("rb") as body:
        out = svc.s3.upload_part(Bucket=svc.bucket, Key=session.object_key, UploadId=session.upload_id,
                                 PartNumber=part_number, Body=body, ContentLength=size,
                                 ContentMD5=base64.b64encode(md5).decode("ascii"))
    return {"PartNumber": part_number, "ETag": out["ETag"], "Size": size}


class UploadIntegrityError(Exception):
    pass


def finish_upload(svc: VideoServices, session: UploadSession,
                  parts: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Complete, verify, hash, announce, then forget the session. Returns the receipt."""
    key = session.object_key
    if parts is None:
        parts = _list_parts(svc, session)
    if parts is not None:
        if offset_of_parts(parts) != session.length:
            raise UploadIntegrityError(f"parts add up to {offset_of_parts(parts)} bytes, not {session.length}")
        try:
            svc.s3.complete_multipart_upload(
                Bucket=svc.bucket, Key=key, UploadId=session.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
                                           for p in sorted(parts, key=lambda p: p["PartNumber"])]})
        except Exception as exc:
            if _s3_code(exc) != "NoSuchUpload":       # another request completed it meanwhile
                raise
    size = _object_size(svc, key)
    if size != session.length:
        raise UploadIntegrityError(f"object {key} holds {size} bytes, the upload declared {session.length}")
    sha256, streamed = object_sha256(svc.s3, svc.bucket, key)
    if streamed != session.length:
        raise UploadIntegrityError(f"object {key} streamed {streamed} bytes, the upload declared {session.length}")
    delivery = announce_upload(svc.config, video_id=session.video_id, object_key=key, size_bytes=size,
                               sha256=sha256, content_type=session.content_type, owner_id=session.owner,
                               original_filename=session.filename, event_id=session.event_id,
                               producer=svc.producer, priority=session.priority)
    receipt = {
        "video_id": session.video_id, "object_key": key, "size_bytes": size, "sha256": sha256,
        "content_type": session.content_type, "owner": session.owner, "filename": session.filename,
        "event_id": session.event_id, "completed_at": _now(),
        "upload_completed": {"topic": delivery.topic, "partition": delivery.partition, "offset": delivery.offset},
    }
    _put_json(svc, receipt_key(session.video_id), json.dumps(receipt, sort_keys=True).encode("utf-8"))
    svc.s3.delete_object(Bucket=svc.bucket, Key=session_key(session.video_id))
    log.info("upload %s complete: %d bytes, sha256 %s, UploadCompleted at %s[%d]@%d", session.video_id, size,
             sha256, delivery.topic, delivery.partition, delivery.offset)
    return receipt


def abandon_upload(svc: VideoServices, session: UploadSession) -> None:
    try:
        svc.s3.abort_multipart_upload(Bucket=svc.bucket, Key=session.object_key, UploadId=session.upload_id)
    except Exception as exc:
        if _s3_code(exc) != "NoSuchUpload":
            raise
    svc.s3.delete_object(Bucket=svc.bucket, Key=session_key(session.video_id))


async def _spool(request: Request, directory: Path, limit: int) -> tuple[Path, int, bytes]:
    """Stream the request body into a temporary file; at most ``limit`` bytes (ProtocolError 413 beyond)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="chunk-", dir=directory)
    path = Path(name)
    md5 = hashlib.md5()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            buffer = bytearray()
            async for piece in request.stream():
                if not piece:
                    continue
                size += len(piece)
                if size > limit:
                    raise ProtocolError(413, f"the chunk exceeds the {limit} bytes this upload can still take")
                md5.update(piece)
                buffer += piece
                if len(buffer) >= SPOOL_WRITE:
                    out.write(buffer)
                    buffer.clear()
            out.write(buffer)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size, md5.digest()


def _upload_headers(offset: int, length: int | None = None) -> dict[str, str]:
    headers = {"Tus-Resumable": TUS_RESUMABLE, "Upload-Offset": str(offset), "Cache-Control": "no-store"}
    if length is not None:
        headers["Upload-Length"] = str(length)
    return headers


def _completed(receipt: dict[str, Any]) -> JSONResponse:
    size = int(receipt["size_bytes"])
    return JSONResponse(receipt, status_code=200,
                        headers={**_upload_headers(size, size), "Video-Id": receipt["video_id"]})


# ------------------------------------------------------------------ upload endpoints

@router.options("/videos")
def upload_options(request: Request) -> Response:
    config = services(request.app).config
    return Response(status_code=204, headers={"Tus-Resumable": TUS_RESUMABLE, "Tus-Version": TUS_RESUMABLE,
                                              "Tus-Extension": "creation,termination",
                                              "Tus-Max-Size": str(config.upload_limits.max_size)})


ANONYMOUS_PREFIX = "anon-"


@dataclass(frozen=True)
class Uploader:
    """Who creates an upload: the owner recorded, and the token an anonymous uploader gets back."""
    owner: str
    upload_token: str | None = None


def uploader(request: Request, named_owner: str | None, workspace: str | None) -> Uploader:
    """The owner of a new upload: the token's ``sub``, never a request parameter.

    ``owner`` (query or metadata) may only repeat the token's own ``sub``; a
    workspace must be one of the token's. Without a token: 401, unless
    ``auth.anonymous_upload`` is on, and then the upload may name neither an
    owner nor a workspace and belongs to a fresh anonymous id.
    """
    config = access_state(request.app).config
    principal = principal_of(request)
    if principal is None:
        if not config.auth.anonymous_upload:
            raise ApiError(401, "sign in to upload (Authorization: Bearer <token> with videos:write)",
                           {"WWW-Authenticate": "Bearer"})
        if named_owner or workspace:
            raise ApiError(403, "an anonymous upload cannot name an owner or a workspace")
        owner = ANONYMOUS_PREFIX + new_event_id()[:24]
        token = mint_token(config, verifier(request.app).keyring, owner, scopes=[VIDEOS_WRITE],
                           ttl=config.auth.anonymous_upload_ttl)
        return Uploader(owner, token)
    if not principal.has(VIDEOS_WRITE):
        raise ApiError(403, f"uploading needs the {VIDEOS_WRITE!r} scope")
    if named_owner and named_owner != principal.sub:
        raise ApiError(403, f"you are {principal.sub}; you cannot upload as {named_owner}")
    return Uploader(principal.sub)


def initial_policy(request: Request, owner: str, visibility: str | None, workspace: str | None) -> VideoPolicy:
    """The policy a new upload starts with: its owner, a workspace the owner belongs to, a visibility."""
    state = access_state(request.app)
    principal = principal_of(request)
    ws = parse_workspace(workspace)
    if ws is not None and (principal is None or ws not in principal.workspaces):
        raise ApiError(403, f"you are not a member of workspace {ws}")
    vis = parse_visibility(visibility, state.config.security.default_visibility)
    assert vis is not None
    return VideoPolicy(owner, ws, vis)


@router.post("/videos", status_code=201)
async def create_video_upload(request: Request) -> Response:
    svc = services(request.app)
    try:
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
        who = await run_in_threadpool(uploader, request, named_owner, workspace)
        policy = await run_in_threadpool(initial_policy, request, who.owner,
                                         q.get("visibility") or meta.get("visibility"), workspace)
    except ProtocolError as exc:
        return _error(exc.status, exc.message)
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.headers)
    try:                                # the request's processing priority, else its workspace's
        priority = svc.config.priorities.resolve(q.get("priority") or meta.get("priority"), policy.workspace_id)
    except ValueError as exc:
        return _error(400, str(exc))
    session = await run_in_threadpool(create_upload, svc, length, filename, content_type, policy.owner_id,
                                      priority)
    try:
        await run_in_threadpool(access_state(request.app).record_policy, session.video_id, policy, policy.owner_id)
    except Exception as exc:  # noqa: BLE001 - no policy on the log: no upload either
        log.warning("upload %s: access policy not recorded (%s); abandoning it", session.video_id, exc)
        await run_in_threadpool(abandon_upload, svc, session)
        return _error(503, "the access policy could not be written to the log; retry", {"Retry-After": "1"})
    location = upload_path(session.video_id)
    body: dict[str, Any] = {"video_id": session.video_id, "upload_url": location, "upload_offset": 0,
                            "upload_length": length, "owner": policy.owner_id}
    if who.upload_token:
        body["upload_token"] = who.upload_token        # the only credential for this anonymous upload
    return JSONResponse(body, status_code=201,
                        headers={**_upload_headers(0, length), "Location": location, "Video-Id": session.video_id})


def own_upload(svc: VideoServices, video_id: str, principal: Principal) -> UploadView | None:
    """The upload if ``principal`` created it; None when it does not exist or belongs to someone else
    (the same answer, so nobody learns which uploads exist)."""
    view = inspect_upload(svc, video_id)
    if view is None:
        return None
    owner = view.session.owner if view.session is not None else (view.receipt or {}).get("owner")
    return view if owner == principal.sub else None


def _signed_in(request: Request) -> Principal | JSONResponse:
    principal = principal_of(request)
    if principal is None:
        return _error(401, "sign in as the uploader (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"})
    return principal


@router.head("/videos/{video_id}/upload")
async def upload_offset(video_id: str, request: Request) -> Response:
    try:
        validate_video_id(video_id)
    except InvalidIdError:
        return Response(status_code=400, headers={"Tus-Resumable": TUS_RESUMABLE})
    principal = _signed_in(request)
    if isinstance(principal, JSONResponse):
        return Response(status_code=401, headers={"Tus-Resumable": TUS_RESUMABLE, "WWW-Authenticate": "Bearer"})
    view = await run_in_threadpool(own_upload, services(request.app), video_id, principal)
    if view is None:
        return Response(status_code=404, headers={"Tus-Resumable": TUS_RESUMABLE, "Cache-Control": "no-store"})
    headers = _upload_headers(view.offset, view.length)
    headers["Upload-Status"] = view.status
    return Response(status_code=200, headers=headers)


@router.patch("/videos/{video_id}/upload")
async def append_chunk(video_id: str, request: Request) -> Response:
    try:
        validate_video_id(video_id)
        check_offset_content_type(request.headers.get("content-type"))
        offset = parse_upload_offset(request.headers.get("upload-offset"))
        declared_header = request.headers.get("content-length")
        declared = parse_non_negative(declared_header, "Content-Length") if declared_header is not None else None
    except InvalidIdError as exc:
        return _error(400, str(exc))
    except ProtocolError as exc:
        return _error(exc.status, exc.message)
    principal = _signed_in(request)
    if isinstance(principal, JSONResponse):
        return principal
    svc = services(request.app)
    view = await run_in_threadpool(own_upload, svc, video_id, principal)
    if view is None:
        return _error(404, f"no upload for video {video_id}")
    if view.status == "completed":
        if offset > view.length:
            return _error(409, f"Upload-Offset {offset} is beyond the upload's {view.length} bytes",
                          _upload_headers(view.length, view.length))
        return _completed(view.receipt or {})          # a retried final PATCH: same answer, nothing re-emitted
    assert view.session is not None
    if view.status == "completing":
        return _completed(await run_in_threadpool(finish_upload, svc, view.session, None))
    if offset != view.offset:
        if view.offset == view.length and declared is not None and offset + declared == view.length:
            # the final chunk landed but its answer was lost before completion: finish now
            return _completed(await run_in_threadpool(finish_upload, svc, view.session, view.parts))
        return _error(409, f"Upload-Offset {offset} does not match the upload's offset {view.offset}",
                      _upload_headers(view.offset, view.length))
    try:
        plan = plan_chunk(offset, view.length, len(view.parts or []), declared, MAX_CHUNK_SIZE)
    except ProtocolError as exc:
        return _error(exc.status, exc.message, _upload_headers(view.offset, view.length))
    if plan.remaining == 0:                            # every byte is there: an empty PATCH finishes
        return _completed(await run_in_threadpool(finish_upload, svc, view.session, view.parts))
    try:
        path, size, md5 = await _spool(request, svc.spool_dir, plan.max_bytes)
    except ProtocolError as exc:
        return _error(exc.status, exc.message, _upload_headers(view.offset, view.length))
    except ClientDisconnect:
        return _error(400, "the client went away before the chunk was complete")
    try:
        if size == 0:
            return Response(status_code=204, headers=_upload_headers(offset, view.length))
        if declared is not None and size != declared:
            return _error(400, f"received {size} bytes, Content-Length said {declared}",
                          _upload_headers(view.offset, view.length))
        try:
            check_chunk_size(size, plan.remaining)
        except ProtocolError as exc:
            return _error(exc.status, exc.message, _upload_headers(view.offset, view.length))
        part = await run_in_threadpool(upload_part, svc, view.session, len(view.parts or []) + 1, path, size, md5)
    finally:
        path.unlink(missing_ok=True)
    new_offset = offset + size
    if new_offset == view.length:
        return _completed(await run_in_threadpool(finish_upload, svc, view.session, [*(view.parts or []), part]))
    return Response(status_code=204, headers=_upload_headers(new_offset, view.length))


@router.delete("/videos/{video_id}/upload")
async def abandon(video_id: str, request: Request) -> Response:
    try:
        validate_video_id(video_id)
    except InvalidIdError as exc:
        return _error(400, str(exc))
    principal = _signed_in(request)
    if isinstance(principal, JSONResponse):
        return principal
    svc = services(request.app)
    view = await run_in_threadpool(own_upload, svc, video_id, principal)
    if view is None:
        return _error(404, f"no upload for video {video_id}")
    if view.status != "open" or view.session is None:
        return _error(409, f"the upload of video {video_id} is already complete")
    await run_in_threadpool(abandon_upload, svc, view.session)
    return Response(status_code=204, headers={"Tus-Resumable": TUS_RESUMABLE})


# ------------------------------------------------------------------ status

@router.get("/videos/{video_id}")
async def video_status(video_id: str, request: Request) -> Response:
    try:
        validate_video_id(video_id)
    except InvalidIdError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    principal = _signed_in(request)
    if isinstance(principal, JSONResponse):
        return principal
    try:
        await run_in_threadpool(access_state(request.app).check_reader, principal, video_id, (ANALYTICS_READ, OPS))
    except ApiError as exc:
        return exc.response()
    svc = services(request.app)
    table = svc.status
    if not table.ready and not await run_in_threadpool(table.wait_ready, STATUS_READY_TIMEOUT):
        return JSONResponse({"detail": "the status table is still catching up with the log"
                             + (f" ({table.last_error})" if table.last_error else "")},
                            status_code=503, headers={"Retry-After": STATUS_RETRY_AFTER})
    view = table.get(video_id)
    if view is not None:
        return JSONResponse(view, headers={"Cache-Control": "no-store"})
    upload = await run_in_threadpool(upload_view, svc, video_id)     # no transition yet: maybe uploading
    if upload is None:
        return JSONResponse({"detail": f"unknown video {video_id}"}, status_code=404)
    return JSONResponse(upload, headers={"Cache-Control": "no-store"})


def upload_view(svc: VideoServices, video_id: str) -> dict[str, Any] | None:
    """The status of a video the stage-transition log does not know yet: uploading or uploaded, or None."""
    upload = inspect_upload(svc, video_id)
    if upload is None:
        return None
    return {"video_id": video_id, "job_id": None, "state": "uploading" if upload.status == "open" else "uploaded",
            "current_stage": None, "progress": 0.0, "stages": {}, "error": None,
            "upload": {"offset": upload.offset, "length": upload.length, "status": upload.status}}
