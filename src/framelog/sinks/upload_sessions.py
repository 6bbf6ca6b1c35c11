"""The resumable upload service: tus uploads kept in object storage as S3 multipart uploads.

Stateless in the process: an upload's session lives in
``uploads/{id}/_session.json``, its bytes in the multipart upload's parts and,
for a trailing stretch shorter than a part, in one small object
``uploads/{id}/_partial/{next part number}``. The offset a client is told is
what object storage holds durably: the parts plus the current partial object.
So any API replica, or a restarted one, continues any upload, and an
interrupted request loses nothing it had delivered.

A PATCH body of any size is cut into parts of ``session.part_size`` as it
streams in (``PartWriter``): memory per upload is one part, never the body.
Every part but the last has exactly ``part_size`` bytes, the S3 rule (>= 5 MiB)
holds whatever chunk sizes a client sends. A partial object is named by the
part it will begin, so one left behind by a crash after its bytes went into a
part is recognisably stale and ignored.

Completion (the last byte landed): complete the multipart upload, check the
size, hash the object by streaming it back, emit UploadCompleted (acks=all,
acknowledged), write a receipt (``uploads/{id}/_receipt.json``), delete the
session. A retried request finds the receipt: nothing is emitted twice. If the
process dies between emitting and deleting the session, the next request emits
again with the same event_id (fixed in the session), which consumers drop as
a duplicate.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from framelog.core import object_keys
from framelog.core.config import PriorityConfig, StreamsConfig, UploadLimits
from framelog.core.errors import FramelogError
from framelog.core.ids import new_event_id, new_video_id
from framelog.sinks.object_store import ObjectStore
from framelog.sinks.uploads import announce_upload

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB           # S3: every part but the last
MAX_PARTS = 10_000                # S3: parts per multipart upload
SESSION_VERSION = 1


def part_size_for(length: int, configured: int) -> int:
    """The part size of an upload: the configured one, larger when needed to stay within MAX_PARTS
    (rounded up to whole MiB)."""
    need = -(-length // MAX_PARTS)
    size = max(configured, MIN_PART_SIZE, need)
    return -(-size // MIB) * MIB


def offset_of_parts(parts: Sequence[Mapping[str, Any]]) -> int:
    """The upload offset the S3 parts add up to; the parts must be numbered 1..n without gaps."""
    numbers = sorted(int(p["PartNumber"]) for p in parts)
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"multipart parts are not contiguous: {numbers[:20]}")
    return sum(int(p["Size"]) for p in parts)


@dataclass(frozen=True)
class UploadSession:
    """What the API keeps in ``uploads/{video_id}/_session.json`` while an upload is open."""
    video_id: str
    object_key: str
    upload_id: str
    length: int
    filename: str
    content_type: str
    owner: str
    created: str              # ISO 8601 UTC
    event_id: str             # the UploadCompleted event's id, fixed up front: a re-emission is a duplicate
    version: int = SESSION_VERSION
    priority: str = ""        # processing_priorities level from the request or the workspace
    part_size: int = 0        # every S3 part but the last has exactly this many bytes (0: sessions before tus)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> UploadSession:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("version") != SESSION_VERSION:
            raise ValueError(f"not an upload session of version {SESSION_VERSION}")
        fields = {f: raw[f] for f in cls.__dataclass_fields__ if f in raw}
        session = cls(**fields)
        if not isinstance(session.length, int) or session.length < 1:
            raise ValueError(f"bad session length {session.length!r}")
        return session


session_key = object_keys.upload_session
receipt_key = object_keys.upload_receipt
partial_prefix = object_keys.upload_partials
partial_key = object_keys.upload_partial


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class UploadIntegrityError(FramelogError):
    """The stored object does not hold what the session declared (never announced)."""


@dataclass
class UploadView:
    """Where one upload stands, read from object storage alone."""
    video_id: str
    status: str                         # open | completing | completed
    offset: int                         # bytes held durably (parts + the current partial object)
    length: int
    session: UploadSession | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)
    partial: tuple[str, int] | None = None      # (key, size) of the current partial object
    stale_partials: list[str] = field(default_factory=list)
    receipt: dict[str, Any] | None = None

    @property
    def owner(self) -> str | None:
        return self.session.owner if self.session is not None else (self.receipt or {}).get("owner")


@dataclass(frozen=True)
class UploadSettings:
    """The sections an :class:`UploadService` reads: the part size (``config.upload_limits``) and how a finished
    upload is announced (``config.streams``, ``config.priorities``)."""
    upload_limits: UploadLimits
    streams: StreamsConfig
    priorities: PriorityConfig


class UploadService:
    """Create, inspect, append to, complete and abandon uploads (the API's routes stay thin)."""

    def __init__(self, settings: UploadSettings, store: ObjectStore, producer: Callable[[], Any]):
        self.settings = settings
        self.store = store
        self._producer = producer       # called when an upload completes: the app's shared producer

    # ------------------------------------------------------------ reading

    def inspect(self, video_id: str) -> UploadView | None:
        """None when there is no such upload (never created, abandoned, or lost)."""
        raw = self.store.get_bytes(session_key(video_id))
        if raw is not None:
            session = UploadSession.from_json(raw)
            parts = self.store.list_parts(session.object_key, session.upload_id)
            if parts is not None:
                view = UploadView(video_id, "open", offset_of_parts(parts), session.length, session, parts)
                for obj in self.store.objects(partial_prefix(video_id)):
                    if obj["Key"] == partial_key(video_id, len(parts) + 1):
                        view.partial = (obj["Key"], int(obj["Size"]))
                        view.offset += int(obj["Size"])
                    else:
                        view.stale_partials.append(obj["Key"])
                return view
            if self.store.size(session.object_key) == session.length:   # assembled, not yet announced
                return UploadView(video_id, "completing", session.length, session.length, session)
            return None
        receipt = self.store.get_json(receipt_key(video_id))
        if receipt is not None:
            size = int(receipt["size_bytes"])
            return UploadView(video_id, "completed", size, size, receipt=receipt)
        stored = self.store.size(object_keys.raw_upload(video_id))    # e.g. an upload of `upload_file` (no receipt)
        if stored is not None:
            return UploadView(video_id, "completed", stored, stored,
                              receipt={"video_id": video_id, "object_key": object_keys.raw_upload(video_id),
                                       "size_bytes": stored})
        return None

    def status_view(self, video_id: str) -> dict[str, Any] | None:
        """The status of a video the stage-transition log does not know yet: uploading or uploaded."""
        upload = self.inspect(video_id)
        if upload is None:
            return None
        return {"video_id": video_id, "job_id": None,
                "state": "uploading" if upload.status == "open" else "uploaded",
                "current_stage": None, "progress": 0.0, "stages": {}, "error": None,
                "upload": {"offset": upload.offset, "length": upload.length, "status": upload.status}}

    # ------------------------------------------------------------ writing

    def create(self, length: int, filename: str, content_type: str, owner: str,
               priority: str = "") -> UploadSession:
        video_id = new_video_id()
        key = object_keys.raw_upload(video_id)
        metadata = {"owner-id": owner}
        if filename:
            metadata["original-filename"] = quote(filename, safe=" ._-()[]")[:1024]
        upload_id = self.store.create_multipart(key, content_type, metadata)
        session = UploadSession(video_id=video_id, object_key=key, upload_id=upload_id, length=length,
                                filename=filename, content_type=content_type, owner=owner, created=_now(),
                                event_id=new_event_id(), priority=priority,
                                part_size=part_size_for(length, self.settings.upload_limits.part_size))
        try:
            self.store.put_bytes(session_key(video_id), session.to_json(), "application/json")
        except Exception:
            self.store.abort_multipart(key, upload_id)
            raise
        return session

    def writer(self, view: UploadView) -> PartWriter:
        assert view.session is not None and view.status == "open"
        return PartWriter(self, view)

    def finish(self, session: UploadSession, parts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Complete, verify, hash, announce, then forget the session. Returns the receipt."""
        key = session.object_key
        if parts is None:
            parts = self.store.list_parts(key, session.upload_id)
        if parts is not None:
            if offset_of_parts(parts) != session.length:
                raise UploadIntegrityError(f"parts add up to {offset_of_parts(parts)} bytes, not {session.length}")
            self.store.complete_multipart(key, session.upload_id, parts)   # False: another request did it
        size = self.store.size(key)
        if size != session.length:
            raise UploadIntegrityError(f"object {key} holds {size} bytes, the upload declared {session.length}")
        sha256, streamed = self.store.sha256(key)
        if streamed != session.length:
            raise UploadIntegrityError(f"object {key} streamed {streamed} bytes, not {session.length}")
        delivery = announce_upload(self.settings.streams, self.settings.priorities, video_id=session.video_id,
                                   object_key=key, size_bytes=size, sha256=sha256,
                                   content_type=session.content_type, owner_id=session.owner,
                                   original_filename=session.filename, event_id=session.event_id,
                                   producer=self._producer(), priority=session.priority)
        receipt = {
            "video_id": session.video_id, "object_key": key, "size_bytes": size, "sha256": sha256,
            "content_type": session.content_type, "owner": session.owner, "filename": session.filename,
            "event_id": session.event_id, "completed_at": _now(),
            "upload_completed": {"topic": delivery.topic, "partition": delivery.partition,
                                 "offset": delivery.offset},
        }
        self.store.put_bytes(receipt_key(session.video_id), json.dumps(receipt, sort_keys=True).encode(),
                             "application/json")
        self.store.delete_prefix(partial_prefix(session.video_id))
        self.store.delete(session_key(session.video_id))
        log.info("upload %s complete: %d bytes, sha256 %s, UploadCompleted at %s[%d]@%d", session.video_id,
                 size, sha256, delivery.topic, delivery.partition, delivery.offset)
        return receipt

    def abandon(self, session: UploadSession) -> None:
        """Termination: abort the multipart upload, drop the partial bytes and the session."""
        self.store.abort_multipart(session.object_key, session.upload_id)
        self.store.delete_prefix(partial_prefix(session.video_id))
        self.store.delete(session_key(session.video_id))


class PartWriter:
    """Appends a stream of bytes at an open upload's offset, one S3 part at a time.

    ``add`` only buffers (call it from the event loop); ``flush`` uploads every
    whole part the buffer holds and ``close`` stores the trailing bytes (a
    final part when the upload is whole, else the partial object); both do
    I/O, so call them in a worker thread. Memory: at most one part plus one
    received piece.
    """

    def __init__(self, service: UploadService, view: UploadView):
        assert view.session is not None
        self.service = service
        self.store = service.store
        self.session: UploadSession = view.session
        self.part_size = self.session.part_size or service.settings.upload_limits.part_size
        self.parts = list(view.parts)
        self.length = view.length
        self.durable = offset_of_parts(self.parts)        # bytes in uploaded parts
        self._partial = view.partial
        self._stale = list(view.stale_partials)
        self.buffer = bytearray()
        self.loaded = view.partial is None

    @property
    def offset(self) -> int:
        """The upload's offset counting what this writer buffered."""
        return self.durable + len(self.buffer) + (0 if self.loaded or self._partial is None else self._partial[1])

    @property
    def remaining(self) -> int:
        return self.length - self.offset

    def load(self) -> None:
        """Read the partial object's bytes: they begin the next part (I/O)."""
        if not self.loaded and self._partial is not None:
            data = self.store.get_bytes(self._partial[0]) or b""
            if len(data) != self._partial[1]:
                raise UploadIntegrityError(f"partial object {self._partial[0]} changed while read")
            self.buffer[:0] = data
        self.loaded = True

    def add(self, data: bytes) -> bool:
        """Buffer ``data``; True when a whole part is ready to flush."""
        assert self.loaded
        if len(data) > self.remaining:
            raise ValueError(f"{len(data)} bytes overrun the upload's remaining {self.remaining}")
        self.buffer += data
        return len(self.buffer) >= self.part_size

    def flush(self) -> None:
        """Upload every whole part in the buffer (I/O)."""
        while len(self.buffer) >= self.part_size:
            body = bytes(self.buffer[:self.part_size])
            self.parts.append(self.store.upload_part(self.session.object_key, self.session.upload_id,
                                                     len(self.parts) + 1, body))
            del self.buffer[:self.part_size]
            self.durable += len(body)

    @property
    def complete(self) -> bool:
        return self.durable == self.length

    def close(self) -> int:
        """Make the buffered bytes durable; returns the offset object storage now holds (I/O)."""
        if not self.loaded:                 # nothing was read: nothing changes
            return self.offset
        self.flush()
        if self.buffer and self.durable + len(self.buffer) == self.length:     # the last part
            body = bytes(self.buffer)
            self.parts.append(self.store.upload_part(self.session.object_key, self.session.upload_id,
                                                     len(self.parts) + 1, body))
            self.durable += len(body)
            self.buffer.clear()
        key = partial_key(self.session.video_id, len(self.parts) + 1)
        if self.buffer:
            self.store.put_bytes(key, bytes(self.buffer))
        stale = [*self._stale, *([self._partial[0]] if self._partial and self._partial[0] != key else [])]
        for old in stale:
            self.store.delete(old)
        self._stale = []
        self._partial = (key, len(self.buffer)) if self.buffer else None
        return self.durable + len(self.buffer)
