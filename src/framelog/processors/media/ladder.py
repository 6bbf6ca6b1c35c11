"""Plan the HLS ladder for one source from the configured ladder.

The configured ladder is ``config.hls.quality_levels``: one level per
``transcoding_profiles`` entry (resolution, bitrate, codec), named after its
HLS level (framelog.core.config._ladder).

Rules:

* Each quality level is a *box* (e.g. 720p = 1280x720). The box is turned to
  the source's orientation (a portrait source gets 720x1280: the rung's height
  becomes the short side), and the picture is fitted inside it keeping the
  source's aspect ratio (a 2.39:1 film at 720p is 1280x536; a 4:3 video is
  960x720; a 1080x1920 phone video at 720p is 720x1280).
* Never upscale: a rung is kept only if its fitted size is no larger than the
  displayed source. If no rung fits (source smaller than the lowest box), the
  lowest rung is kept at the source's own size.
* Dimensions are rounded down to even numbers (4:2:0 chroma).
* Bitrates come from the config. Only the lowest-rung-at-source-size case
  scales the bitrate by its pixel area against the box (floor 25 %), so a
  320x180 source does not get 640x360's bitrate.
* maxrate = 1.1 x bitrate, bufsize = 2 x bitrate (VBV), for the encoder.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Protocol

from framelog.processors.media.ffmpeg_commands import RungSpec
from framelog.processors.media.probe import MediaInfo

MAXRATE_FACTOR = 1.10
BUFSIZE_FACTOR = 2.0
MIN_BITRATE_FRACTION = 0.25


class Level(Protocol):  # framelog.core.config.QualityLevel fits (read-only: configs are frozen)
    @property
    def name(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def bitrate(self) -> int: ...
    @property
    def bandwidth(self) -> int: ...
    @property
    def codec(self) -> str: ...


@dataclass(frozen=True)
class Rung:
    name: str            # the quality level's name ("720p"): also the directory name
    width: int
    height: int
    video_bitrate: int   # bits/s target for the encoder
    maxrate: int
    bufsize: int
    nominal_bandwidth: int  # the config's bandwidth, before measurement
    box_width: int       # the config's resolution (landscape)
    box_height: int
    codec: str = "h264"  # the profile's codec (ffmpeg_commands.VIDEO_ENCODERS key)

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"

    def spec(self) -> RungSpec:
        return RungSpec(self.name, self.width, self.height, self.video_bitrate, self.maxrate, self.bufsize,
                        self.codec)

    def to_dict(self) -> dict:
        return asdict(self)


def _even(x: float) -> int:
    return max(2, int(x) // 2 * 2)


def fit(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Fit (src_w, src_h) into the box turned to the source's orientation; even dimensions."""
    if src_h > src_w:
        box_w, box_h = min(box_w, box_h), max(box_w, box_h)
    else:
        box_w, box_h = max(box_w, box_h), min(box_w, box_h)
    scale = min(box_w / src_w, box_h / src_h)
    return _even(round(src_w * scale, 6)), _even(round(src_h * scale, 6))


def _rung(level: Level, w: int, h: int, bitrate: int) -> Rung:
    return Rung(level.name, w, h, bitrate, int(bitrate * MAXRATE_FACTOR), int(bitrate * BUFSIZE_FACTOR),
                level.bandwidth, level.width, level.height, level.codec)


def plan_ladder(info: MediaInfo | tuple[int, int], levels: Iterable[Level]) -> list[Rung]:
    """Rungs for this source, highest first. ``info`` is a MediaInfo or (display width, height)."""
    src_w, src_h = (info.width, info.height) if isinstance(info, MediaInfo) else info
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"source has no picture size ({src_w}x{src_h})")
    ordered = sorted(levels, key=lambda q: min(q.width, q.height), reverse=True)
    if not ordered:
        raise ValueError("no quality levels configured")
    rungs = []
    for level in ordered:
        w, h = fit(src_w, src_h, level.width, level.height)
        if w <= src_w and h <= src_h:
            rungs.append(_rung(level, w, h, level.bitrate))
    if not rungs:
        lowest = ordered[-1]
        w, h = _even(src_w), _even(src_h)
        bw, bh = fit(src_w, src_h, lowest.width, lowest.height)
        frac = max(MIN_BITRATE_FRACTION, min(1.0, (w * h) / (bw * bh)))
        rungs.append(_rung(lowest, w, h, int(lowest.bitrate * frac)))
    return rungs
