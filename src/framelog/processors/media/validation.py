"""Upload validation: is this a playable video within the limits? Plus the seed's quality label and key.

Length-independent: the container and streams are probed (ffprobe reads the
index, over a presigned URL for an upload in S3, so nothing is downloaded
whole), the limits checked, and short windows decoded (the start, the end, and
``samples`` spread between them, media.validation in framelog.yaml). A 4-hour
upload costs about what a 1-minute one does; every frame is decoded later, by
the transcoding jobs, which fail a corrupt stretch with the same reason
(processors.media.decode_check.chunk_failure).

Reason codes (``ValidationFailed.reason``), checked in this order:

``empty_file``   zero bytes
``too_large``    bigger than ``upload_limits.max_size`` (checked before any decode)
``not_media``    ffprobe cannot read it, or it has neither video nor audio
``audio_only``   audio streams and no video stream (m4a, mp3, …)
``still_image``  a picture codec (png, mjpeg, …) or a single decodable frame
``no_video``     a video stream with no usable picture size or no decodable frame
``too_long``     longer than ``upload_limits.max_duration``
``truncated``    a decoded window runs out of bytes the index promised (ffprobe exits 0 on a cut file)
``corrupt``      a decoded window has undecodable frames; the message names the stretch
                 (``undecodable frames at 00:41:20-00:41:30``, on the HLS segment grid)

``ValidationFailed.message`` is for the uploader (words, no server path, no
tool output); ``detail`` keeps the tool's output for operators.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from framelog.core import object_keys
from framelog.core.errors import FramelogError
from framelog.processors.media import decode_check
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.probe import IMAGE_CODECS, MediaInfo, probe

REASONS = ("empty_file", "too_large", "not_media", "audio_only", "still_image", "no_video", "too_long",
           "truncated", "corrupt")
DETAIL_CHARS = 4000


class ValidationFailed(FramelogError):
    """The upload is rejected for ``reason`` (one of REASONS); not worth retrying."""

    def __init__(self, reason: str, message: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.detail = detail[-DETAIL_CHARS:]


class Limits(Protocol):  # framelog.core.config.UploadLimits fits (read-only: configs are frozen)
    @property
    def max_size(self) -> int: ...
    @property
    def max_duration(self) -> float: ...


class Sampling(Protocol):  # framelog.core.config.ValidationSampling fits (read-only: configs are frozen)
    @property
    def samples(self) -> int: ...
    @property
    def sample_duration(self) -> float: ...


@dataclass(frozen=True)
class DefaultSampling:
    samples: int = 8
    sample_duration: float = 3.0


@dataclass(frozen=True)
class Window:
    start: float
    seconds: float

    @property
    def end(self) -> float:
        return self.start + self.seconds


def sample_windows(duration: float, samples: int, seconds: float) -> list[Window]:
    """The start, the end and ``samples`` windows spread evenly between them; one window (the whole
    video) when they would cover it anyway."""
    if duration <= 0 or duration <= (samples + 2) * seconds:
        return [Window(0.0, duration if duration > 0 else 0.0)]
    step = (duration - seconds) / (samples + 1)
    return [Window(round(i * step, 3), seconds) for i in range(samples + 2)]


def validate(source: str | os.PathLike[str], limits: Limits, *, size: int | None = None,
             sampling: Sampling | None = None, segment_seconds: float = 10.0,
             progress: fc.Progress | None = None) -> MediaInfo:
    """Probe, check and sample-decode ``source`` (a file, or an http(s) URL with its ``size``);
    return its MediaInfo or raise ValidationFailed. ``segment_seconds`` is the grid a corrupt
    stretch is reported on."""
    if size is None:
        size = Path(source).stat().st_size
    if size == 0:
        raise ValidationFailed("empty_file", "the file is empty")
    if size > limits.max_size:
        raise ValidationFailed("too_large", f"{size} bytes exceeds the limit of {limits.max_size}")
    try:
        info = probe(source, size=size)
    except fc.FfmpegError as exc:
        raise ValidationFailed("not_media", "the file is not a video or audio format that can be read",
                               exc.stderr) from None
    if not info.has_video and not info.has_audio:
        raise ValidationFailed("not_media", f"the file has no audio or video stream (format {info.format_name!r})")
    if not info.has_video:
        raise ValidationFailed("audio_only", f"the file has audio ({info.audio_codec}) but no video")
    if info.video_codec in IMAGE_CODECS and (info.frame_count or 0) <= 1:
        raise ValidationFailed("still_image", f"the file is a still image ({info.video_codec})")
    if info.width <= 0 or info.height <= 0:
        raise ValidationFailed("no_video", "the video stream has no picture size")
    frames = _decodable_frames(source)
    if frames == 0:
        raise ValidationFailed("no_video", "no video frame can be decoded")
    if frames == 1 or "image2" in info.format_name or info.format_name.endswith("_pipe"):
        raise ValidationFailed("still_image", f"the file holds a single frame ({info.video_codec})")
    if info.duration > limits.max_duration:
        raise ValidationFailed("too_long", f"{info.duration:.1f} s exceeds the limit of {limits.max_duration:.0f} s")
    plan: Sampling = sampling or DefaultSampling()
    windows = sample_windows(info.duration, plan.samples, plan.sample_duration)
    for i, w in enumerate(windows):
        _check_window(source, info, w, segment_seconds)
        if progress:
            progress((i + 1) / len(windows))
    return info


def _check_window(source: str | os.PathLike[str], info: MediaInfo, w: Window, grid: float) -> None:
    """Decode one window; raise ``truncated`` or ``corrupt`` naming the stretch that failed."""
    whole = w.start == 0 and w.seconds >= info.duration
    res = fc.run_ffmpeg(fc.decode_window_args(source, w.start, None if whole else w.seconds), check=False)
    log = decode_check.parse_decode_log(res.stderr, offset=w.start)
    tail = "\n".join(line for line in res.stderr.splitlines() if " -> " not in line and " <- " not in line)
    detail = f"window {w.start:.3f}+{w.seconds:.3f}s, ffmpeg exit {res.returncode}:\n" + (
        log.error_text() or tail[-DETAIL_CHARS:])
    end = min(w.end, info.duration) if info.duration > 0 else w.end
    if log.truncated or (res.returncode != 0 and log.frames == 0):
        at = log.last_frame if log.last_frame is not None else w.start
        raise ValidationFailed("truncated", f"the file ends early: nothing decodes after {decode_check.hms(at)} "
                               f"of its {decode_check.hms(info.duration)}", detail)
    message = decode_check.window_failure(log, grid=grid, duration=info.duration)
    if message is None and res.returncode != 0:
        message = decode_check.corrupt_message(*decode_check.stretch([w.start, end], grid=grid,
                                                                     duration=info.duration))
    if message:
        raise ValidationFailed("corrupt", message, detail)


def _decodable_frames(source: str | os.PathLike[str]) -> int:
    """0, 1 or 2: how many video frames decode (at most two are read)."""
    try:
        data = fc.run_json(fc.count_frames_args(source))
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
    return object_keys.progressive_mp4(video_id, quality, uploaded_at)
