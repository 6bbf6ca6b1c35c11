"""Measuring a ladder the way a viewer would see it (tests and bench/bench_chunked.py):
frame times and brightness, beep onsets, frame counts, discontinuities. Read-only ffmpeg/ffprobe runs."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from framelog.processors.media import ffmpeg_commands as fc

_PTS = re.compile(r"pts_time:([0-9.]+)")
_YAVG = re.compile(r"lavfi\.signalstats\.YAVG=([0-9.]+)")
_SILENCE_END = re.compile(r"silence_end: ([0-9.]+)")


def _run(args: list[str]) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return proc.stdout + proc.stderr


def frames(playlist: Path) -> list[tuple[float, float]]:
    """(presentation time as written, mean luma) of every frame of an HLS rendition or a file."""
    out = _run([fc.FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-v", "info", *fc.hls_input_options(), "-copyts",
                "-i", str(playlist), "-map", "0:v:0", "-vf", "signalstats,metadata=print:key=lavfi.signalstats.YAVG",
                "-f", "null", "-"])
    times, lumas = [], []
    for line in out.splitlines():
        m = _PTS.search(line)
        if m and "frame:" in line:
            times.append(float(m.group(1)))
        m = _YAVG.search(line)
        if m:
            lumas.append(float(m.group(1)))
    return list(zip(times, lumas, strict=True))


def flash_times(playlist: Path, threshold: float = 200.0) -> list[float]:
    return [t for t, y in frames(playlist) if y >= threshold]


def beep_onsets(playlist: Path) -> list[float]:
    """Where each beep starts, in the stream's own timestamps (the end of each silence)."""
    out = _run([fc.FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-v", "info", *fc.hls_input_options(), "-copyts",
                "-i", str(playlist), "-map", "0:a:0", "-af", "silencedetect=n=-30dB:d=0.02", "-f", "null", "-"])
    return [float(x) for x in _SILENCE_END.findall(out)]
