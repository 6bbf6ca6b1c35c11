"""The bodies of the upload and status routes (``api.videos``) as the OpenAPI document shows them."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class UploadCreated(BaseModel):
    """``POST /videos``: the upload is open (also in ``Location``, ``Upload-Offset``, ``Video-Id``)."""
    video_id: str
    upload_url: str = Field(description="PATCH chunks here (the Location header)")
    upload_offset: int
    upload_length: int
    owner: str
    upload_token: str | None = Field(default=None, description="anonymous uploads only: the upload's credential")


class UploadReceipt(BaseModel):
    """The final ``PATCH``'s answer (and any retry of it): what was stored and announced."""
    model_config = ConfigDict(extra="allow")
    video_id: str
    object_key: str
    size_bytes: int
    sha256: str | None = None
    content_type: str | None = None
    owner: str | None = None
    filename: str | None = None
    event_id: str | None = None
    completed_at: str | None = None
    upload_completed: dict[str, Any] | None = Field(default=None, description="topic, partition, offset")


class StageStatus(BaseModel):
    model_config = ConfigDict(extra="allow")
    stage: str
    state: str
    attempt: int
    progress: float
    updated_at: str | None = None


class UploadProgress(BaseModel):
    offset: int
    length: int
    status: str = Field(description="open, completing or completed")


class VideoStatus(BaseModel):
    """Where a video stands: from the stage-transition log, or, before its first transition, its upload."""
    model_config = ConfigDict(extra="allow")
    video_id: str
    job_id: str | None
    state: str = Field(description="uploading, uploaded, processing, ready, failed or deleted")
    current_stage: str | None
    progress: float
    stages: dict[str, StageStatus]
    error: dict[str, Any] | None
    updated_at: str | None = None
    upload: UploadProgress | None = None
