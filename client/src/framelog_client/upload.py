"""Resumable uploads over tus 1.0.0: ``upload_resumable(api_url, path, token=...)`` -> video id.

POST /videos creates the upload (tus creation, ``Upload-Metadata`` carrying the
file name, content type, visibility, workspace and priority); PATCH sends the
file in ``chunk_size`` pieces (read one at a time, never the whole file), each
with ``Upload-Checksum: sha256 ...`` (tus checksum extension: a chunk that
arrives damaged is refused with 460 and sent again). On a connection error, a
5xx, a 409, a 423 or a 460 the client asks HEAD for the offset the server holds
and continues from there, with bounded retries and exponential backoff. A
server restarted in the middle continues, since the upload's state lives in
object storage. An upload interrupted for good is resumed later with
``ResumableUploader.resume(upload_url, path)``.

The last PATCH is answered 204 with ``Upload-Offset`` equal to the length
(tus 1.0); a server that answers 200 with a receipt (framelog before tus 1.0)
is understood too. The file's sha256 is computed on the way.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import urljoin

import httpx

from framelog_client.backoff import Backoff
from framelog_client.errors import error_message

__all__ = ["ResumableUploader", "UploadError", "UploadOutcome", "upload_resumable", "upload_resumable_outcome",
           "encode_upload_metadata", "TUS_RESUMABLE", "OFFSET_CONTENT_TYPE", "DEFAULT_CHUNK_SIZE",
           "CHECKSUM_MISMATCH"]

TUS_RESUMABLE = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024      # per PATCH; the server streams any size into its S3 parts
CHECKSUM_MISMATCH = 460                 # tus checksum extension: the chunk was discarded
RESUME_STATUSES = (409, 423, CHECKSUM_MISMATCH)   # ask HEAD where the server is, then continue
HASH_READ = 4 * 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=900.0)  # a final PATCH may complete the object before answering
_META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

Progress = Callable[[int, int], None]           # (bytes the server holds, total bytes)
PathLike = Union[str, "os.PathLike[str]"]


class UploadError(Exception):
    """The API refused the upload, or it did not get through within the retries."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadOutcome:
    video_id: str
    size_bytes: int
    sha256: Optional[str]
    receipt: Dict[str, Any] = field(default_factory=dict)
    upload_url: Optional[str] = None


def encode_upload_metadata(metadata: Mapping[str, str]) -> str:
    """tus ``Upload-Metadata``: ``key base64(value)`` pairs, comma-separated (an empty value: the key alone)."""
    pairs = []
    for key, value in metadata.items():
        if not _META_KEY.match(key):
            raise ValueError(f"metadata key {key!r} is not valid")
        pairs.append(f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}" if value else key)
    return ",".join(pairs)


def _retryable(response: httpx.Response) -> bool:
    return response.status_code >= 500 or response.status_code in (408, 429)


def _detail(response: httpx.Response) -> str:
    return error_message(response)


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
            while self.upto < end:
                block = f.read(min(HASH_READ, end - self.upto))
                if not block:
                    break
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
                 backoff_initial: float = 0.5, backoff_max: float = 15.0, progress: Optional[Progress] = None,
                 http: Optional[httpx.Client] = None, token: Optional[str] = None):
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1 byte")
        self.api_url = api_url.rstrip("/") + "/"
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        self.backoff = Backoff(backoff_initial, backoff_max)
        self.progress = progress
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self.failures = 0          # consecutive
        self.retries = 0           # in total
        self.video_id: Optional[str] = None
        self.token = token         # the uploader's bearer token (its sub owns the upload); an anonymous
        #                            upload's own upload_token once created

    def _headers(self, headers: Dict[str, str]) -> Dict[str, str]:
        headers = {"Tus-Resumable": TUS_RESUMABLE, **headers}
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
        time.sleep(self.backoff.delay(self.failures))      # backoff between attempts, not a synchronisation

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """One request, retried on connection errors and 5xx (for idempotent use: POST only creates)."""
        kw["headers"] = self._headers(kw.get("headers") or {})
        while True:
            try:
                response = self.http.request(method, url, **kw)
            except httpx.TransportError as exc:
                self._failed(f"{method} {url}: {exc!r}")
                continue
            if _retryable(response):
                self._failed(f"{method} {url}: HTTP {response.status_code} {_detail(response)}")
                continue
            return response

    # ------------------------------------------------------------ protocol steps

    def create(self, path: PathLike, content_type: Optional[str] = None, visibility: Optional[str] = None,
               workspace: Optional[str] = None, priority: Optional[str] = None) -> str:
        """POST /videos; returns the upload URL. The owner is the token's sub;
        ``visibility``/``workspace``: the video's access policy; ``priority``: its processing priority."""
        src = Path(path)
        length = src.stat().st_size
        meta = {"filename": src.name}
        for key, value in (("content_type", content_type), ("visibility", visibility), ("workspace", workspace),
                           ("priority", priority)):
            if value:
                meta[key] = value
        r = self._request("POST", self.url("/videos"),
                          headers={"Upload-Length": str(length), "Upload-Metadata": encode_upload_metadata(meta)})
        if r.status_code != 201:
            raise UploadError(f"creating the upload of {src} failed: HTTP {r.status_code} {_detail(r)}", r.status_code)
        self.failures = 0
        body = _json(r)
        if body.get("upload_token"):                    # anonymous: this upload's own credential
            self.token = body["upload_token"]
        self.video_id = r.headers.get("Video-Id") or body.get("video_id")
        return self.url(r.headers["Location"])

    def offset(self, upload_url: str) -> Tuple[int, int]:
        """HEAD: (offset the server holds, length)."""
        r = self._request("HEAD", upload_url)
        if r.status_code not in (200, 204):
            raise UploadError(f"HEAD {upload_url}: HTTP {r.status_code}", r.status_code)
        return int(r.headers["Upload-Offset"]), int(r.headers["Upload-Length"])

    def resume(self, upload_url: str, path: PathLike) -> UploadOutcome:
        """Send what the server does not hold yet (asking it with HEAD first) until the upload completes."""
        src = Path(path)
        size = src.stat().st_size
        offset, length = self.offset(upload_url)
        if length != size:
            raise UploadError(f"{src} has {size} bytes but the upload at {upload_url} expects {length}")
        digest = _FileDigest(src)
        video_id = self.video_id or upload_url.rstrip("/").split("/")[-2]
        receipt: Dict[str, Any] = {}
        with src.open("rb") as f:
            while offset < length:
                if self.progress is not None:
                    self.progress(offset, length)
                f.seek(offset)
                chunk = f.read(min(self.chunk_size, length - offset))
                digest.extend(offset, chunk)
                checksum = base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")
                try:
                    r = self.http.patch(upload_url, content=chunk, headers=self._headers({
                        "Upload-Offset": str(offset), "Upload-Checksum": f"sha256 {checksum}",
                        "Content-Type": OFFSET_CONTENT_TYPE}))
                except httpx.TransportError as exc:
                    self._failed(f"PATCH at offset {offset}: {exc!r}")
                    offset, _ = self.offset(upload_url)
                    continue
                if r.status_code == 200:                   # framelog before tus 1.0: complete, with a receipt
                    receipt = _json(r)
                    video_id = receipt.get("video_id", video_id)
                    offset = length
                    break
                if r.status_code == 204:
                    new = int(r.headers["Upload-Offset"])
                    if new > offset:
                        self.failures = 0
                    offset = new
                    video_id = r.headers.get("Video-Id") or video_id
                    continue
                if r.status_code in RESUME_STATUSES or _retryable(r):
                    self._failed(f"PATCH at offset {offset}: HTTP {r.status_code} {_detail(r)}")
                    offset, _ = self.offset(upload_url)
                    continue
                raise UploadError(f"PATCH at offset {offset}: HTTP {r.status_code} {_detail(r)}", r.status_code)
        if self.progress is not None:
            self.progress(length, length)
        sha = receipt.get("sha256") or digest.hexdigest(length)
        return UploadOutcome(video_id, length, sha, receipt or {"video_id": video_id}, upload_url)

    def upload(self, path: PathLike, content_type: Optional[str] = None, visibility: Optional[str] = None,
               workspace: Optional[str] = None, priority: Optional[str] = None) -> UploadOutcome:
        return self.resume(self.create(path, content_type, visibility, workspace, priority), path)


def _json(response: httpx.Response) -> Dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def upload_resumable(api_url: str, path: PathLike, *, token: Optional[str], chunk_size: int = DEFAULT_CHUNK_SIZE,
                     progress: Optional[Progress] = None, visibility: Optional[str] = None,
                     workspace: Optional[str] = None, **kw: Any) -> str:
    """Upload a file through the API's resumable protocol as ``token``'s subject; returns the video id."""
    return upload_resumable_outcome(api_url, path, token=token, chunk_size=chunk_size, progress=progress,
                                    visibility=visibility, workspace=workspace, **kw).video_id


def upload_resumable_outcome(api_url: str, path: PathLike, *, token: Optional[str],
                             chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Optional[Progress] = None,
                             visibility: Optional[str] = None, workspace: Optional[str] = None,
                             priority: Optional[str] = None, content_type: Optional[str] = None,
                             **kw: Any) -> UploadOutcome:
    with ResumableUploader(api_url, chunk_size=chunk_size, progress=progress, token=token, **kw) as up:
        return up.upload(path, content_type=content_type, visibility=visibility, workspace=workspace,
                         priority=priority)
