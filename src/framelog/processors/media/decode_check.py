"""Reading a decode's log: which stretch of the video failed to decode, in words a user can read.

A decode run with ``ffmpeg_commands.DECODE_LOG_OPTIONS`` (``-loglevel level+info
-debug_ts``) logs a ``demuxer+ffmpeg ->`` line with the time of every packet it
hands a decoder, a ``decoder ->`` line per decoded video frame, and each error
with an ``[error]`` level tag. An error is placed at the video packet being
decoded when it was logged (the frame lines lag behind it by the decoder's
threads), so a corrupt stretch is known to the packet; the reason
rounds it out to the HLS segment grid (``corrupt: undecodable frames at
00:41:20-00:41:30``), the stretch a viewer would miss.

Validation decodes samples of the upload with this; the chunk jobs, which
decode every frame, call :func:`chunk_failure` on their own decode's log to
fail a video with the same reason for the chunk's stretch.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# Error-level lines that real, healthy files produce after a seek into an open GOP
# (the references before the seek point are missing); not corruption.
BENIGN = ("co located POCs unavailable", "mmco: unref short failure", "reference picture missing during reorder",
          "Missing reference picture", "number of reference frames", "Last message repeated")
# The demuxer ran out of bytes the index promised: the upload was cut short.
TRUNCATION = ("partial file", "End of file")

_LEVEL = re.compile(r"\[(error|fatal|panic)\]")
_FRAME = re.compile(r"decoder -> ist_index:\d+ type:video .*?frame_pts_time:(-?[0-9.]+|NOPTS)")
_PACKET = re.compile(r"demuxer\+ffmpeg -> ist_index:\d+ type:(\w+) .*?pkt_pts_time:(-?[0-9.]+|NOPTS)")


@dataclass
class DecodeLog:
    """What a decode's log says; times are media times (the log's times plus ``offset``)."""
    frames: int = 0                   # decoded video frames
    first_frame: float | None = None
    last_frame: float | None = None
    errors: list[tuple[float, str]] = field(default_factory=list)   # (media time, the log line)
    truncated: bool = False

    @property
    def error_times(self) -> list[float]:
        return [t for t, _ in self.errors]

    def error_text(self, limit: int = 40) -> str:
        """The error lines with their media times, for operators (the debug_ts lines left out)."""
        lines = [f"{t:.3f}s {line}" for t, line in self.errors[:limit]]
        if len(self.errors) > limit:
            lines.append(f"... {len(self.errors) - limit} more")
        return "\n".join(lines)


def parse_decode_log(stderr: str, *, offset: float = 0.0) -> DecodeLog:
    """Parse a ``level+info -debug_ts`` decode log. ``offset`` turns its times into the video's:
    a decode of an input seeked with ``-ss T`` (no ``-copyts``) logs times from T, so pass T."""
    out = DecodeLog()
    video_at: float | None = None      # the last video packet handed to its decoder
    any_at = offset                    # the last packet of any stream (a video without video packets yet)
    for line in stderr.splitlines():
        m = _FRAME.search(line)
        if m:
            if m.group(1) != "NOPTS":
                t = float(m.group(1)) + offset
                out.first_frame = t if out.first_frame is None else min(out.first_frame, t)
                out.last_frame = t if out.last_frame is None else max(out.last_frame, t)
            out.frames += 1
            continue
        m = _PACKET.search(line)
        if m:
            if m.group(2) != "NOPTS":
                any_at = float(m.group(2)) + offset
                if m.group(1) == "video":
                    video_at = any_at
            continue
        if not _LEVEL.search(line) or any(b in line for b in BENIGN):
            continue
        if any(t in line for t in TRUNCATION):
            out.truncated = True
        out.errors.append((max(video_at if video_at is not None else any_at, 0.0), line.strip()))
    return out


def hms(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def stretch(times: list[float], *, grid: float, duration: float | None = None) -> tuple[float, float]:
    """The segment-grid stretch ``[a, b)`` holding every time (``b`` at most the video's ``duration``)."""
    a = math.floor(min(times) / grid) * grid
    b = (math.floor(max(times) / grid) + 1) * grid
    if duration:
        b = min(b, math.ceil(duration))
    return a, max(b, a + 1)


def corrupt_message(a: float, b: float) -> str:
    return f"undecodable frames at {hms(a)}-{hms(b)}"


def window_failure(log: DecodeLog, *, grid: float, duration: float | None = None) -> str | None:
    """The corrupt stretch of a decode as a message, or None if it decoded cleanly."""
    if not log.errors:
        return None
    return corrupt_message(*stretch(log.error_times, grid=grid, duration=duration))


def chunk_failure(stderr: str, returncode: int, *, chunk_start: float, chunk_end: float, grid: float,
                  offset: float | None = None, duration: float | None = None) -> str | None:
    """For a chunk job: the reason (``corrupt: undecodable frames at HH:MM:SS-HH:MM:SS``) its decode's log
    gives to fail the video, or None if the chunk decoded cleanly.

    The chunk's ffmpeg must log with ``ffmpeg_commands.DECODE_LOG_OPTIONS``; ``offset`` is what to add to
    the log's times to get the video's (``chunk_start`` for an ``-ss chunk_start`` input without -copyts,
    0 with -copyts). A non-zero exit with no error line blames the whole chunk.
    """
    log = parse_decode_log(stderr, offset=chunk_start if offset is None else offset)
    message = window_failure(log, grid=grid, duration=duration)
    if message is None and returncode != 0:
        message = corrupt_message(*stretch([chunk_start, max(chunk_start, chunk_end - 1e-3)], grid=grid,
                                           duration=duration))
    return f"corrupt: {message}" if message else None
