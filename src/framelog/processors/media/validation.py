"""Upload validation: is this a playable video within the limits? Plus the seed's quality label and key.

Reason codes (``ValidationFailed.reason``), checked in this order:

``empty_file``   zero bytes
``too_large``    bigger than ``upload_limits.max_size`` (checked before any decode)
``not_media``    ffprobe cannot read it, or it has neither video nor audio
``audio_only``   audio streams and no video stream (m4a, mp3, …)
``still_image``  a picture codec (png, mjpeg, …) or a single decodable frame
``no_video``     a video stream with no usable picture size or no decodable frame
``too_long``     longer than ``upload_limits.max_duration``
``truncated``    the full decode (``-xerror``) fails: ffprobe exits 0 on a cut file
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Protocol

from framelog.core.errors import FramelogError
from framelog.processors import cdn_routing
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.probe import IMAGE_CODECS, MediaInfo, probe

REASONS = ("empty_file", "too_large", "not_media", "audio_only", "still_image", "no_video", "too_long", "truncated")


class ValidationFailed(FramelogError):
    """The upload is rejected for ``reason`` (one of REASONS); not worth retrying."""

    def __init__(self, reason: str, message: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Limits(Protocol):  # framelog.core.config.UploadLimits fits (read-only: configs are frozen)
    @property
    def max_size(self) -> int: ...
    @property
    def max_duration(self) -> float: ...


def validate(path: str | os.PathLike[str], limits: Limits, *, full_decode: bool = True,
             progress: fc.Progress | None = None) -> MediaInfo:
    """Probe, check and fully decode ``path``; return its MediaInfo or raise ValidationFailed."""
    p = Path(path)
    size = p.stat().st_size
    if size == 0:
        raise ValidationFailed("empty_file", f"{p.name} is empty")
    if size > limits.max_size:
        raise ValidationFailed("too_large", f"{size} bytes exceeds the limit of {limits.max_size}")
    try:
        info = probe(p)
    except fc.FfmpegError as exc:
        raise ValidationFailed("not_media", f"ffprobe cannot read {p.name}: {exc.stderr.strip()[-300:]}") from None
    if not info.has_video and not info.has_audio:
        raise ValidationFailed("not_media", f"{p.name} has no audio or video stream (format {info.format_name!r})")
    if not info.has_video:
        raise ValidationFailed("audio_only", f"{p.name} has audio ({info.audio_codec}) but no video")
    if info.video_codec in IMAGE_CODECS and (info.frame_count or 0) <= 1:
        raise ValidationFailed("still_image", f"{p.name} is a still image ({info.video_codec})")
    if info.width <= 0 or info.height <= 0:
        raise ValidationFailed("no_video", f"{p.name} has a video stream without a picture size")
    frames = _decodable_frames(p)
    if frames == 0:
        raise ValidationFailed("no_video", f"{p.name}: no decodable video frame")
    if frames == 1 or "image2" in info.format_name or info.format_name.endswith("_pipe"):
        raise ValidationFailed("still_image", f"{p.name} holds a single frame ({info.video_codec})")
    if info.duration > limits.max_duration:
        raise ValidationFailed("too_long", f"{info.duration:.1f} s exceeds the limit of {limits.max_duration:.0f} s")
    if full_decode:
        res = fc.run_ffmpeg(fc.decode_check_args(p), duration=info.duration, progress=progress, check=False)
        if res.returncode != 0:
            raise ValidationFailed("truncated", f"{p.name} does not decode to the end: {res.stderr.strip()[-300:]}")
    return info


def _decodable_frames(path: Path) -> int:
    """0, 1 or 2: how many video frames decode (at most two are read)."""
    try:
        data = fc.run_json(fc.count_frames_args(path))
    except fc.FfmpegError:
        return 0
    streams = data.get("streams") or [{}]
    try:
        return min(2, int(streams[0].get("nb_read_frames", 0)))
    except (TypeError, ValueError):
        return 0


# ---------------------------------------------------------------- seed §1.2 storage key

def determine_quality(height: int, *, allow_4k: bool = False) -> str:
    """The seed's determineQuality: >=1080 -> 1080p, >=720 -> 720p, >=480 -> 480p, else 360p.

    As in the seed, a 2160-line source is labelled "1080p" (the seed has no 4K
    label); ``allow_4k=True`` labels >=2160 as "4K", the name of the 4K HLS rung.
    Callers pass the *short side* of the displayed picture, so a 1080x1920
    portrait video is "1080p", not "1080p because 1920 >= 1080" by accident.
    """
    if allow_4k and height >= 2160:
        return "4K"
    if height >= 1080:
        return "1080p"
    if height >= 720:
        return "720p"
    if height >= 480:
        return "480p"
    return "360p"


def quality_of(info: MediaInfo, *, allow_4k: bool = False) -> str:
    return determine_quality(info.short_side, allow_4k=allow_4k)


def source_key(video_id: str, uploaded_at: datetime, quality: str) -> str:
    """Where the progressive MP4 is published: the seed's CDN path (``generateCDNPath``,
    ``videos/{y}/{m:02}/{quality}/{video_id}.mp4``, dated by the upload).

    The seed also has a storage key with the day (``generateStorageKey``) and
    uploads a second copy to each CDN at the CDN path; framelog's edges pull
    from the bucket, so the one published object sits at the CDN path and the
    edges serve it by its key (README: where framelog differs from the seed).
    """
    return cdn_routing.video_file_path(video_id, quality, uploaded_at)
