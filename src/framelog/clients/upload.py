"""framelog's tus 1.0.0 client: ``upload_resumable(api_url, path)`` -> video id.

POST /videos creates the upload (tus creation); PATCH sends the file in
``chunk_size`` pieces (read one at a time, never the whole file), each with an
``Upload-Checksum: sha256`` the server checks before keeping it (460: resent).
On a connection error, a 5xx, a 409 or a 423, the client asks HEAD for the
offset the server holds and continues from there, with bounded retries and
exponential backoff. A server restarted in the middle continues, since the
upload's state lives in object storage. The file's sha256 is computed on the
way (re-reading only what a rewind skips).
"""
from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from framelog.api.upload_protocol import (
    CHECKSUM_MISMATCH,
    DEFAULT_CHUNK_SIZE,
    OFFSET_CONTENT_TYPE,
    TUS_RESUMABLE,
    encode_upload_metadata,
)
from framelog.core.backoff import Backoff
from framelog.core.errors import FramelogError

Progress = Callable[[int, int], None]           # (bytes the server holds, total bytes)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=900.0)   # the final PATCH hashes the whole object before answering
HASH_READ = 4 * 1024 * 1024


class UploadError(FramelogError):
    """The API refused the upload, or it did not get through within the retries."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadOutcome:
    video_id: str
    size_bytes: int
    sha256: str | None
    receipt: dict[str, Any]


def _retryable(exc: Exception | None, response: httpx.Response | None) -> bool:
    if exc is not None:
        return isinstance(exc, httpx.TransportError)
    assert response is not None
    return response.status_code >= 500 or response.status_code in (408, 423, 429)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except Exception:  # noqa: BLE001
        return response.text[:500]


class _FileDigest:
    """The file's sha256, fed by the chunks as they are sent; a jump forward reads the skipped bytes
    from the file, a jump back starts over."""

    def __init__(self, path: Path):
        self.path = path
        self.hash = hashlib.sha256()
        self.upto = 0

    def _read(self, end: int) -> None:
        with self.path.open("rb") as f:
            f.seek(self.upto)
            while self.upto < end and (block := f.read(min(HASH_READ, end - self.upto))):
                self.hash.update(block)
                self.upto += len(block)

    def extend(self, offset: int, chunk: bytes) -> None:
        if offset < self.upto:
            self.hash, self.upto = hashlib.sha256(), 0
        self._read(offset)
        if offset == self.upto:
            self.hash.update(chunk)
            self.upto += len(chunk)

    def hexdigest(self, length: int) -> str:
        self._read(length)
        return self.hash.hexdigest()


class ResumableUploader:
    """One file, one upload; ``max_retries`` consecutive failures (reset by any progress) end it."""

    def __init__(self, api_url: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE, max_retries: int = 8,
                 backoff_initial: float = 0.5, backoff_max: float = 15.0, progress: Progress | None = None,
                 http: httpx.Client | None = None, token: str | None = None):
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1 byte")
        self.api_url = api_url.rstrip("/") + "/"
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.progress = progress
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self.failures = 0          # consecutive
        self.retries = 0           # in total
        self.token = token         # the uploader's bearer token (its sub owns the upload); an anonymous
                                   # upload's own upload_token once created

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "Authorization": f"Bearer {self.token}"} if self.token else headers

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> ResumableUploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return urljoin(self.api_url, path.lstrip("/"))

    # ------------------------------------------------------------ retries

    def _failed(self, what: str) -> None:
        self.failures += 1
        self.retries += 1
        if self.failures > self.max_retries:
            raise UploadError(f"{what}; gave up after {self.max_retries} retries")
        time.sleep(Backoff(self.backoff_initial, self.backoff_max).delay(self.failures))   # backoff, not a wait

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """One request, retried on connection errors and 5xx (for idempotent use: POST only creates)."""
        kw["headers"] = self._headers(kw.get("headers") or {})
        while True:
            try:
                response = self.http.request(method, url, **kw)
            except httpx.TransportError as exc:
                self._failed(f"{method} {url}: {exc!r}")
                continue
            if _retryable(None, response):
                self._failed(f"{method} {url}: HTTP {response.status_code} {_detail(response)}")
                continue
            return response

    # ------------------------------------------------------------ protocol steps

    def create(self, path: str | os.PathLike[str], content_type: str | None = None,
               visibility: str | None = None, workspace: str | None = None, priority: str | None = None) -> str:
        """POST /videos; returns the upload URL. The owner is the token's sub;
        ``visibility``/``workspace``: the video's access policy; ``priority``: its processing priority."""
        src = Path(path)
        length = src.stat().st_size
        meta = {"filename": src.name}
        if content_type:
            meta["content_type"] = content_type
        if visibility:
            meta["visibility"] = visibility
        if workspace:
            meta["workspace"] = workspace
        if priority:
            meta["priority"] = priority
        r = self._request("POST", self.url("/videos"),
                          headers={"Tus-Resumable": TUS_RESUMABLE, "Upload-Length": str(length),
                                   "Upload-Metadata": encode_upload_metadata(meta)})
        if r.status_code != 201:
            raise UploadError(f"creating the upload of {src} failed: HTTP {r.status_code} {_detail(r)}", r.status_code)
        self.failures = 0
        if r.json().get("upload_token"):                # anonymous: this upload's own credential
            self.token = r.json()["upload_token"]
        return self.url(r.headers["Location"])

    def offset(self, upload_url: str) -> tuple[int, int]:
        """HEAD: (offset the server holds, length)."""
        r = self._request("HEAD", upload_url, headers={"Tus-Resumable": TUS_RESUMABLE})
        if r.status_code != 200:
            raise UploadError(f"HEAD {upload_url}: HTTP {r.status_code}", r.status_code)
        return int(r.headers["Upload-Offset"]), int(r.headers["Upload-Length"])

    def resume(self, upload_url: str, path: str | os.PathLike[str]) -> UploadOutcome:
        """Send what the server does not hold yet (asking it with HEAD first) until the upload completes."""
        src = Path(path)
        size = src.stat().st_size
        offset, length = self.offset(upload_url)
        if length != size:
            raise UploadError(f"{src} has {size} bytes but the upload at {upload_url} expects {length}")
        digest = _FileDigest(src)
        with src.open("rb") as f:
            while offset < length:
                if self.progress is not None:
                    self.progress(offset, length)
                f.seek(offset)
                chunk = f.read(min(self.chunk_size, length - offset))
                digest.extend(offset, chunk)
                checksum = base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")
                try:
                    r = self.http.patch(upload_url, content=chunk,
                                        headers=self._headers({"Tus-Resumable": TUS_RESUMABLE,
                                                               "Upload-Offset": str(offset),
                                                               "Upload-Checksum": f"sha256 {checksum}",
                                                               "Content-Type": OFFSET_CONTENT_TYPE}))
                except httpx.TransportError as exc:
                    self._failed(f"PATCH at offset {offset}: {exc!r}")
                    offset, _ = self.offset(upload_url)
                    continue
                if r.status_code == 204:
                    new = int(r.headers["Upload-Offset"])
                    if new > offset:
                        self.failures = 0
                    offset = new
                    continue
                if r.status_code in (409, CHECKSUM_MISMATCH) or _retryable(None, r):
                    self._failed(f"PATCH at offset {offset}: HTTP {r.status_code} {_detail(r)}")
                    offset, _ = self.offset(upload_url)
                    continue
                raise UploadError(f"PATCH at offset {offset}: HTTP {r.status_code} {_detail(r)}", r.status_code)
        if self.progress is not None:
            self.progress(length, length)
        video_id = upload_url.rstrip("/").split("/")[-2]          # /videos/{id}/upload
        return UploadOutcome(video_id, length, digest.hexdigest(length), {"video_id": video_id,
                                                                          "upload_url": upload_url})

    def upload(self, path: str | os.PathLike[str], content_type: str | None = None, visibility: str | None = None,
               workspace: str | None = None, priority: str | None = None) -> UploadOutcome:
        return self.resume(self.create(path, content_type, visibility, workspace, priority), path)


def upload_resumable(api_url: str, path: str | os.PathLike[str], *, token: str | None,
                     chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Progress | None = None,
                     visibility: str | None = None, workspace: str | None = None, **kw: Any) -> str:
    """Upload a file through the API's resumable protocol as ``token``'s subject; returns the video id."""
    return upload_resumable_outcome(api_url, path, token=token, chunk_size=chunk_size, progress=progress,
                                    visibility=visibility, workspace=workspace, **kw).video_id


def upload_resumable_outcome(api_url: str, path: str | os.PathLike[str], *, token: str | None,
                             chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Progress | None = None,
                             visibility: str | None = None, workspace: str | None = None,
                             priority: str | None = None, **kw: Any) -> UploadOutcome:
    with ResumableUploader(api_url, chunk_size=chunk_size, progress=progress, token=token, **kw) as up:
        return up.upload(path, visibility=visibility, workspace=workspace, priority=priority)


__all__ = ["ResumableUploader", "UploadError", "UploadOutcome", "upload_resumable", "upload_resumable_outcome"]
