"""ffprobe JSON -> MediaInfo, with dimensions as displayed (rotation honoured)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from framelog.processors.media import ffmpeg_commands as fc

# Codecs that carry pictures rather than video (a single PNG/JPEG/… frame).
IMAGE_CODECS = frozenset({"png", "mjpeg", "jpeg2000", "bmp", "gif", "tiff", "webp", "jpegls", "pam", "ppm",
                          "pgm", "pbm", "qoi", "jpegxl", "libjxl", "svg", "sgi", "targa", "photocd"})


INTERLACED_FIELD_ORDERS = frozenset({"tt", "bb", "tb", "bt"})
SQUARE_TOLERANCE = 0.01   # a SAR within 1 % of 1:1 is taken as square pixels
HDR_TRANSFERS = {"smpte2084": "pq", "arib-std-b67": "hlg"}


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format_name: str           # ffprobe's format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    size: int                  # bytes on disk
    duration: float            # seconds (container, else longest stream; 0.0 if unknown)
    bitrate: int               # bits/s (container's, else size*8/duration)
    has_video: bool
    video_codec: str | None
    width: int                 # displayed width (after rotation), 0 without video
    height: int                # displayed height (after rotation)
    coded_width: int           # as stored in the stream
    coded_height: int
    rotation: int              # degrees clockwise to display, normalised to 0/90/180/270
    fps: float                 # average frame rate (avg_frame_rate), 0.0 if unknown
    variable_frame_rate: bool  # r_frame_rate and avg_frame_rate disagree
    frame_count: int | None    # nb_frames when the container states it
    pix_fmt: str | None
    has_audio: bool
    audio_codec: str | None
    audio_channels: int
    audio_sample_rate: int
    # How the source must be conditioned before scaling (ffmpeg_commands.source_filters):
    sar: str = "1:1"                  # sample (pixel) aspect ratio; 4:3 on 1440x1080 HDV shows 16:9
    field_order: str = "progressive"  # tt/bb/tb/bt: interlaced (ffprobe field_order), else progressive
    color_transfer: str | None = None   # smpte2084 (PQ) or arib-std-b67 (HLG) on HDR
    color_primaries: str | None = None
    color_space: str | None = None
    audio_index: int = 0              # which audio stream (among the audio streams) is used: the default one
    audio_streams: int = 0
    audio_channel_layout: str | None = None

    @property
    def interlaced(self) -> bool:
        return self.field_order in INTERLACED_FIELD_ORDERS

    @property
    def hdr(self) -> str | None:
        """"pq" or "hlg" for an HDR transfer function, else None."""
        return HDR_TRANSFERS.get(self.color_transfer or "")

    def conditioning(self) -> fc.Conditioning:
        """What the picture needs before scaling: deinterlacing, tone mapping (ffmpeg_commands)."""
        return fc.Conditioning(deinterlace=self.interlaced, hdr=self.hdr)

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def is_portrait(self) -> bool:
        return self.height > self.width

    def to_dict(self) -> dict:
        return asdict(self)


def _rate(value: str | None) -> float:
    if not value or value in ("0/0", "N/A"):
        return 0.0
    try:
        return float(Fraction(value))
    except (ValueError, ZeroDivisionError):
        return 0.0


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def rotation_of(stream: dict) -> int:
    """Rotation in degrees (0/90/180/270) from the displaymatrix side data or the legacy rotate tag.

    Only the magnitude matters for the displayed size (90 or 270 swaps width and height).
    """
    for side in stream.get("side_data_list") or ():
        if "rotation" in side:
            return int(round(_float(side["rotation"]) / 90.0)) * 90 % 360
    tag = (stream.get("tags") or {}).get("rotate")
    if tag is not None:
        return int(round(_float(tag) / 90.0)) * 90 % 360
    return 0


def media_info_from_probe(data: dict, path: str = "", size: int | None = None) -> MediaInfo:
    """Build MediaInfo from ffprobe's JSON (``-show_format -show_streams``)."""
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not (s.get("disposition") or {}).get("attached_pic")), None)
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    audio_index = next((i for i, s in enumerate(audios) if (s.get("disposition") or {}).get("default")), 0)
    audio = audios[audio_index] if audios else None
    if size is None:
        size = _int(fmt.get("size")) or (os.path.getsize(path) if path and os.path.exists(path) else 0)
    duration = _float(fmt.get("duration"))
    if duration <= 0:
        duration = max((_float(s.get("duration")) for s in streams), default=0.0)
    bitrate = _int(fmt.get("bit_rate")) or (int(size * 8 / duration) if duration > 0 else 0)
    cw = ch = rot = 0
    fps = 0.0
    vfr = False
    frames = None
    if video:
        cw, ch = _int(video.get("width")), _int(video.get("height"))
        rot = rotation_of(video)
        fps = _rate(video.get("avg_frame_rate"))
        r = _rate(video.get("r_frame_rate"))
        vfr = bool(fps and r and abs(fps - r) / r > 0.01)
        if not fps:
            fps = r
        frames = _int(video.get("nb_frames")) or None
    sar = _sar(video.get("sample_aspect_ratio") if video else None)
    dw = _display_width(cw * float(Fraction(sar.replace(":", "/")))) if cw else 0   # displayed width: square pixels
    w, h = (ch, dw) if rot in (90, 270) else (dw, ch)
    return MediaInfo(
        path=str(path), format_name=fmt.get("format_name", ""), size=int(size), duration=duration, bitrate=bitrate,
        has_video=video is not None, video_codec=video.get("codec_name") if video else None,
        width=w, height=h, coded_width=cw, coded_height=ch, rotation=rot, fps=fps, variable_frame_rate=vfr,
        frame_count=frames, pix_fmt=video.get("pix_fmt") if video else None,
        has_audio=audio is not None, audio_codec=audio.get("codec_name") if audio else None,
        audio_channels=_int(audio.get("channels")) if audio else 0,
        audio_sample_rate=_int(audio.get("sample_rate")) if audio else 0,
        sar=sar, field_order=(video.get("field_order") or "progressive") if video else "progressive",
        color_transfer=video.get("color_transfer") if video else None,
        color_primaries=video.get("color_primaries") if video else None,
        color_space=video.get("color_space") if video else None,
        audio_index=audio_index, audio_streams=len(audios),
        audio_channel_layout=audio.get("channel_layout") if audio else None)


def _sar(value: str | None) -> str:
    """ffprobe's sample_aspect_ratio as "n:d"; unknown (0:1, N/A) is square."""
    try:
        n, d = (int(x) for x in (value or "").split(":"))
    except ValueError:
        return "1:1"
    if n <= 0 or d <= 0:
        return "1:1"
    f = Fraction(n, d)
    if abs(f - 1) < SQUARE_TOLERANCE:   # a scaler's rounding (15878:15859), not anamorphic video
        return "1:1"
    return f"{f.numerator}:{f.denominator}"


def _display_width(x: float) -> int:
    """Width with non-square pixels made square: nearest integer (the coded width when SAR is 1)."""
    return max(1, int(round(x)))


def probe(path: str | os.PathLike[str], *, size: int | None = None) -> MediaInfo:
    """Run ffprobe on ``path`` (a file, or an http(s) URL with its ``size``); raises
    ffmpeg_commands.FfmpegError if ffprobe cannot read it."""
    if size is None:
        size = Path(path).stat().st_size
    return media_info_from_probe(fc.ffprobe_json(path), str(path), size)
