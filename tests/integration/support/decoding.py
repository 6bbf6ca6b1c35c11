"""A whole file decoded the way validation reads a window (ffmpeg_commands.decode_window_args and the
log parser of processors.media.decode_check): a test fails on any decode error, naming it."""
from __future__ import annotations

from pathlib import Path

from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.decode_check import parse_decode_log


def assert_decodes(path: Path) -> int:
    """Every frame of ``path`` decodes; returns the number of video frames."""
    result = fc.run_ffmpeg(fc.decode_window_args(path), check=False)
    log = parse_decode_log(result.stderr)
    assert result.returncode == 0 and not log.errors and log.frames > 0, (result.returncode, log.error_text())
    return log.frames
