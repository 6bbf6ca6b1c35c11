"""Put a local file into object storage and announce it with UploadCompleted.

The event is produced only after the object is complete (multipart upload
finished and its size checked), so no consumer ever sees a half-written upload.
Two paths lead here: ``upload_file`` (a direct upload from this host) and
the API's tus uploads (``framelog.sinks.upload_sessions``); both announce through
``announce_upload`` (the tus service hashes the finished object with ``ObjectStore.sha256``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path

from framelog.core import object_keys
from framelog.core.config import ObjectStorageConfig, PriorityConfig, StreamsConfig
from framelog.core.ids import new_video_id, validate_video_id
from framelog.schemas.records import UploadCompleted
from framelog.sinks.object_store import ObjectStore
from framelog.streams import topics
from framelog.streams.producer import Delivery, EventProducer


@dataclass(frozen=True)
class UploadResult:
    video_id: str
    object_key: str
    size_bytes: int
    sha256: str
    offset: int


class _HashingReader:
    """A file wrapper that hashes what boto3 reads, so the file is read once."""

    def __init__(self, path: Path):
        self._f = path.open("rb")
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.sha256.update(data)
        return data

    def close(self) -> None:
        self._f.close()


def upload_file(s3: ObjectStorageConfig, streams: StreamsConfig, priorities: PriorityConfig,
                path: str | os.PathLike[str], owner_id: str = "local-user", video_id: str | None = None,
                priority: str = "") -> UploadResult:
    """Put ``path`` into ``s3`` (``config.object_storage``, with the key pairs of the state dir in
    ``streams.stack``) and announce it (``config.streams``, ``config.priorities``)."""
    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"{src} is not a file")
    video_id = validate_video_id(video_id or new_video_id())
    key = object_keys.raw_upload(video_id)
    content_type = mimetypes.guess_type(src.name)[0] or "application/octet-stream"
    store = ObjectStore(s3, streams.stack.state_dir)
    reader = _HashingReader(src)
    try:
        store.upload_fileobj(reader, key, content_type,
                             metadata={"owner-id": owner_id, "original-filename": src.name[:200]})
    finally:
        reader.close()
    size = store.size(key)
    if size != src.stat().st_size:
        raise OSError(f"upload of {src} is incomplete: {size} of {src.stat().st_size} bytes landed")
    digest = reader.sha256.hexdigest()
    delivery = announce_upload(streams, priorities, video_id=video_id, object_key=key, size_bytes=size,
                               sha256=digest, content_type=content_type, owner_id=owner_id, original_filename=src.name,
                               priority=priority)
    return UploadResult(video_id, key, size, digest, delivery.offset)


def announce_upload(streams: StreamsConfig, priorities: PriorityConfig, *, video_id: str, object_key: str,
                    size_bytes: int, sha256: str, content_type: str, owner_id: str,
                    original_filename: str | None = None, event_id: str | None = None,
                    producer: EventProducer | None = None, timeout: float = 30.0, priority: str = "") -> Delivery:
    """Emit UploadCompleted for an object that is complete, and wait for the broker's acknowledgement.

    Call only once the object is whole and its size and sha256 are known. A
    fixed ``event_id`` (the API derives one per upload session) makes a
    re-emission after a crash a duplicate that consumers drop on event_id.
    Uses ``producer`` if given (acks=all, idempotent), else a short-lived one.
    ``priority`` is a processing_priorities level ("" = the default) of ``priorities`` (``config.priorities``);
    ``streams``: ``config.streams``.
    """
    event = UploadCompleted(video_id=validate_video_id(video_id), object_key=object_key, size_bytes=size_bytes,
                            sha256=sha256, content_type=content_type, owner_id=owner_id,
                            original_filename=(original_filename or "")[:200],
                            priority=priorities.resolve(priority))
    if event_id is not None:
        event = dataclasses.replace(event, event_id=event_id)
    own = producer is None
    producer = producer or EventProducer(streams)
    try:
        return producer.emit(topics.UPLOADS, event, timeout=timeout)
    finally:
        if own:
            producer.close()
