"""Poster, periodic thumbnails, sprite sheet and WebVTT storyboard.

Output layout under ``out_dir``::

    poster.jpg                 frame at ~10 % of the duration, at most 1280 wide
    thumbs/thumb_00001.jpg ... one every ``interval`` seconds (t = 0, interval, 2*interval, ...)
    storyboard.jpg             the same thumbnails tiled ``columns`` wide
    storyboard.vtt             WebVTT cues "sprite.jpg#xywh=x,y,w,h" per interval

Thumbnails and the sprite come from one decode (``split`` + ``tile``).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.probe import MediaInfo, probe

DEFAULT_INTERVAL = 5.0          # seconds between thumbnails
DEFAULT_THUMB_WIDTH = 160       # sprite cell width (height follows the aspect ratio)
DEFAULT_COLUMNS = 10
POSTER_POSITION = 0.10          # fraction of the duration
MAX_THUMBNAILS = 1000           # very long videos get a longer interval instead


@dataclass(frozen=True)
class Thumbnails:
    poster: Path
    thumbnails: tuple[Path, ...]
    sprite: Path
    storyboard: Path
    interval: float
    tile_width: int
    tile_height: int
    columns: int
    rows: int

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("poster", "sprite", "storyboard"):
            d[k] = str(d[k])
        d["thumbnails"] = [str(p) for p in self.thumbnails]
        return d


def _ts(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def storyboard_vtt(count: int, duration: float, interval: float, sprite_name: str, tile_w: int, tile_h: int,
                   columns: int) -> str:
    """WebVTT storyboard: cue i covers [i*interval, min((i+1)*interval, duration))."""
    lines = ["WEBVTT", ""]
    for i in range(count):
        start = i * interval
        if start >= duration and i > 0:
            break
        end = min((i + 1) * interval, duration) if duration > start else start + interval
        x, y = (i % columns) * tile_w, (i // columns) * tile_h
        lines += [f"{_ts(start)} --> {_ts(end)}", f"{sprite_name}#xywh={x},{y},{tile_w},{tile_h}", ""]
    return "\n".join(lines)


def poster(src: str | os.PathLike[str], out: str | os.PathLike[str], info: MediaInfo | None = None,
           position: float = POSTER_POSITION) -> Path:
    info = info or probe(src)
    at = max(0.0, info.duration * position) if info.duration > 0 else 0.0
    out = Path(out)
    fc.run_ffmpeg(fc.poster_args(src, out, at, conditioning=info.conditioning()))
    if not out.exists() or out.stat().st_size == 0:  # seeking past the last frame (very short clip): take the first
        fc.run_ffmpeg(fc.poster_args(src, out, 0.0, conditioning=info.conditioning()))
    return out


def generate_thumbnails(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, info: MediaInfo | None = None,
                        interval: float = DEFAULT_INTERVAL, tile_width: int = DEFAULT_THUMB_WIDTH,
                        columns: int = DEFAULT_COLUMNS, progress: fc.Progress | None = None) -> Thumbnails:
    info = info or probe(src)
    out = Path(out_dir)
    thumbs_dir = out / "thumbs"
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    poster_path = poster(src, out / "poster.jpg", info)
    duration = max(info.duration, 0.001)
    if duration / interval > MAX_THUMBNAILS:
        interval = math.ceil(duration / MAX_THUMBNAILS)
    expected = max(1, math.ceil(duration / interval))
    columns = max(1, min(columns, expected))
    rows = math.ceil(expected / columns)
    tile_w = tile_width // 2 * 2
    tile_h = max(2, int(round(tile_w * info.height / info.width / 2)) * 2) if info.width else tile_w * 9 // 16
    sprite = out / "storyboard.jpg"
    fc.run_ffmpeg(fc.thumbnails_sprite_args(src, thumbs_dir / "thumb_%05d.jpg", sprite, interval=interval,
                                            width=tile_w, height=tile_h, columns=columns, rows=rows,
                                            conditioning=info.conditioning()),
                  duration=info.duration, progress=progress)
    thumbs = tuple(sorted(thumbs_dir.glob("thumb_*.jpg")))
    count = min(len(thumbs), columns * rows)
    vtt = out / "storyboard.vtt"
    vtt.write_text(storyboard_vtt(count, duration, interval, sprite.name, tile_w, tile_h, columns))
    return Thumbnails(poster_path, thumbs, sprite, vtt, interval, tile_w, tile_h, columns, rows)
