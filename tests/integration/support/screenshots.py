"""What a browser screenshot shows, measured: grey-level spread (0 for a blank area)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def frame_stddev(png: Path) -> float:
    """Standard deviation of the screenshot's grey levels: 0 for a blank (one-colour) picture."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(png), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         check=True, capture_output=True).stdout
    n = len(raw)
    mean = sum(raw) / n
    return (sum((b - mean) ** 2 for b in raw[::7]) / len(raw[::7])) ** 0.5
