"""The bodies of ``GET /v1/stream`` and ``POST /v1/stream/renew`` as the OpenAPI document shows them.

The routes build these answers as dicts (``api.stream``); the models say what
a player may rely on, field by field.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RenewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session: str | None = Field(default=None, description="the playback session (or the X-Playback-Session header)")


class EdgeUrls(BaseModel):
    provider: str
    stream_url: str
    manifest_url: str
    download_url: str | None = None


class CdnChoice(BaseModel):
    primary: str
    fallback: str
    rule: str
    failed_over: bool
    country: str | None
    health: dict[str, bool]


class Quality(BaseModel):
    name: str
    width: int | None = None
    height: int | None = None
    bandwidth: int | None = None
    average_bandwidth: int | None = None
    codecs: str | None = None
    frame_rate: float | None = None
    playlist_url: str
    availability: str = Field(description="available, restoring or archived")
    restore_estimate_seconds: float | None = None


class Subtitle(BaseModel):
    language: str | None
    label: str
    kind: str
    playlist_url: str | None
    vtt_url: str | None


class Encryption(BaseModel):
    method: str
    key_uri: str
    grant: str = Field(description="the query string to append to every key request")
    grant_requires_viewer_token: bool


class Renewal(BaseModel):
    url: str
    after_seconds: float


class Delivery(BaseModel):
    """The signed part of an answer: every URL lives ``security.stream_url_ttl`` at most."""
    video_id: str
    quality: str
    stream_url: str
    manifest_url: str
    download_url: str | None
    fallback: EdgeUrls
    cdn: CdnChoice
    qualities: list[Quality]
    subtitles: list[Subtitle]
    chapters_url: str | None
    poster_url: str | None
    duration_seconds: float | None
    encryption: Encryption | None
    expires_at: int = Field(description="epoch seconds")
    processing: bool = Field(False, description="still processing (issue 13 pt 4): the lowest rung of the chunks done "
                                                "so far, its playlist growing (EVENT) until EXT-X-ENDLIST")
    renewal: Renewal
    session: str = Field(description="the signed playback session: send it with every event batch and renewal")
    session_expires_at: int


class AnalyticsTarget(BaseModel):
    ingest_url: str
    video_id: str
    session_id: str
    viewer_id: str
    country: str | None
    stream_start_event_id: str
    stream_start_recorded: bool
    event_types: list[str]


class AccessBasis(BaseModel):
    reason: str = Field(description="why access was granted: owner, workspace, public, share_token")


class StreamAnswer(Delivery):
    analytics: AnalyticsTarget
    access: AccessBasis


class StreamRenewal(Delivery):
    session_id: str
