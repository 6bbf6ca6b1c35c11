"""What a pipeline stage's job is, independent of Kafka.

A job handler (one module per stage, after PeerTube's job handlers) takes a
JobContext — the video, the job, the stage's inputs, a scratch directory and a
progress callback — fetches what it needs from object storage, calls the
processors, writes its outputs under the job's staging prefix and returns the
outputs for the next stage. The agent that calls it knows Kafka; the handler
does not.

Idempotence: a handler's outputs live under
``work/{video_id}/{job_id}/{stage}/attempt-{n}/`` and a completion marker
(``_SUCCESS.json`` under ``work/{video_id}/{job_id}/{stage}/``) is written
last. A redelivered request whose marker exists returns the recorded outputs
without running again, so redelivery never produces a second visible result.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from framelog.core import object_keys
from framelog.core.config import CachingStrategy, CdnConfig, HlsConfig, MediaConfig, PipelineConfig, UploadLimits
from framelog.core.errors import FramelogError


class JobCancelled(FramelogError):
    """The stage timed out or the worker is shutting down; the job stopped its work."""


class JobTimedOut(JobCancelled):
    """The stage's timeout fired: the job's child processes were killed (framelog.core.child_processes)."""


class PermanentJobError(FramelogError):
    """A failure that retrying cannot fix (a corrupt upload, say): fail the video now.

    ``error_type`` is a short stable code (``truncated``, ``audio_only``...) for
    metrics and the stage transition; the message is for people (the uploader
    sees it: words, never a server path); ``detail`` (tool output) is for
    operators only: the log and the dead letter's ``error``.
    """

    def __init__(self, error_type: str, message: str, detail: str = ""):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.detail = detail


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^\s/'\":,;()\[\]]+){2,}/?")


def public_reason(exc: BaseException) -> tuple[str, str]:
    """(what the uploader is shown, what only operators see) for a job's failure.

    An error that knows both (``public`` and ``detail``: a media tool's failure,
    PermanentJobError's ``message``/``detail``) says so; any other has its
    filesystem paths replaced, so no server path reaches a user.
    """
    public = getattr(exc, "public", None) or getattr(exc, "message", None)
    detail = getattr(exc, "detail", "") or ""
    text = str(exc) or repr(exc)
    if not isinstance(public, str) or not public:
        public, detail = text, detail or text
    return _PATH.sub("<path>", public), detail


@dataclass
class JobContext:
    video_id: str
    job_id: str
    stage: str
    attempt: int
    inputs: Mapping[str, str]
    workdir: Path
    progress: Callable[[float], None] = lambda fraction: None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled(f"{self.stage} job {self.job_id} was cancelled")

    @property
    def staging_prefix(self) -> str:
        return object_keys.job_staging(self.video_id, self.job_id, self.stage, self.attempt)

    @property
    def marker_key(self) -> str:
        return object_keys.job_marker(self.video_id, self.job_id, self.stage)


@dataclass(frozen=True)
class JobSettings:
    """The sections of the configuration the stage jobs read (handlers.py, chunks.py); pipeline/worker.py
    fills it from the ``Config``."""

    pipeline: PipelineConfig        # the stages' timeouts (a presigned URL outlives its job)
    upload_limits: UploadLimits     # what validation accepts; the audio bitrate
    media: MediaConfig              # encoder preset, thumbnails, analysis, captions, chunking
    hls: HlsConfig                  # the ladder, segments, playlists, encryption
    cdn: CdnConfig                  # caching rules: each published object's Content-Type and Cache-Control
    caching: CachingStrategy        # how many first segments the edges are warmed with


class JobHandler(Protocol):
    """One stage's work. ``run`` is called in a worker thread and may take minutes."""

    stage: str

    def run(self, ctx: JobContext) -> dict[str, str]:
        """Do the work and return the outputs handed to the next stage."""
        ...
