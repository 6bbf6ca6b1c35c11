"""What a published video offers a player, before any signing: the stream API's cacheable part.

Everything here follows from the video's AssetPublished alone (renditions with
their playlist paths, the MP4's edge path, poster, chapters, captions,
duration, whether it is encrypted), so it is the same for every viewer and
changes only when a new asset is published. The stream API keeps plans in the
seed's "Application Cache" level (1 h, framelog.core.cache), keyed by the asset's
event id and dropped when the catalog folds an event of the video; what
depends on the viewer and the moment (access, signatures, expiry, routing,
storage availability) is decided per request.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from framelog.core import object_keys
from framelog.processors.edge_signing import VIDEO_FILES, parse_object_path


@dataclass(frozen=True)
class Subtitles:
    language: str
    playlist_path: str | None     # the WebVTT subtitles playlist (EXT-X-MEDIA in the master)
    vtt_path: str | None          # the whole track as one WebVTT file


@dataclass(frozen=True)
class DeliveryPlan:
    video_id: str
    renditions: tuple[dict[str, Any], ...] = ()     # as published, each with its "playlist_path"
    download_path: str | None = None
    poster_path: str | None = None
    chapters_path: str | None = None
    subtitles: tuple[Subtitles, ...] = field(default_factory=tuple)
    duration_seconds: float | None = None
    encrypted: bool = False

    @property
    def names(self) -> list[str]:
        return [r["name"] for r in self.renditions]


def download_path(asset: Mapping[str, Any], video_id: str) -> str | None:
    """The published MP4's key (``AssetPublished.metadata.source_key``) if the edges serve it, else None.

    Its y/m come from the upload, as the pipeline laid it out, never from the
    clock; an MP4 published under an older layout has no edge path.
    """
    key = (asset.get("metadata") or {}).get("source_key")
    try:
        obj = parse_object_path(key) if key else None
    except ValueError:
        return None
    return obj.key if obj is not None and obj.kind == VIDEO_FILES and obj.video_id == video_id else None


def plan_for(video_id: str, asset: Mapping[str, Any]) -> DeliveryPlan:
    renditions = tuple({**r, "playlist_path": r.get("playlist_key")
                        or object_keys.rendition_playlist(video_id, r["name"])}
                       for r in (asset.get("renditions") or []))
    thumbnails = list(asset.get("thumbnails") or [])
    poster = next((t for t in thumbnails if t.endswith("poster.jpg")), thumbnails[0] if thumbnails else None)
    meta = asset.get("metadata") or {}
    playlist, whole = meta.get("captions_playlist_key"), meta.get("captions_key")
    subtitles = (Subtitles(meta.get("captions_language") or "", playlist, whole),) if playlist or whole else ()
    return DeliveryPlan(video_id, renditions, download_path(asset, video_id), poster, asset.get("chapters_key"),
                        subtitles, asset.get("duration_seconds"), bool(asset.get("key_id")))


def plan_key(video_id: str, asset: Mapping[str, Any]) -> tuple[str, str]:
    """The cache key of a plan: the video and the publication it was made from."""
    return video_id, str(asset.get("event_id") or asset.get("job_id") or "")
