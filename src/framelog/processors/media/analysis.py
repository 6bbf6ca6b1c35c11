"""Content analysis in one decode pass: scene changes -> chapters, black frames, silence, loudness.

One ffmpeg run carries ``select='gt(scene,T)',showinfo`` and ``blackdetect``
on a shrunken copy of the video and ``silencedetect`` + ``ebur128`` (EBU R128
integrated loudness, loudness range, true peak) on the audio; the results are
parsed from the filters' log lines.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.probe import MediaInfo, probe

DEFAULT_SCENE_THRESHOLD = 0.4
DEFAULT_MIN_CHAPTER_SECONDS = 5.0
DEFAULT_BLACK_MIN_DURATION = 0.5
DEFAULT_BLACK_PIXEL_THRESHOLD = 0.10
DEFAULT_SILENCE_NOISE_DB = -50.0
DEFAULT_SILENCE_MIN_DURATION = 1.0


@dataclass(frozen=True)
class Interval:
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Chapter:
    index: int
    start: float
    end: float
    title: str


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float | None   # None when the audio is below the gate (silence gives -70)
    loudness_range_lu: float | None
    true_peak_dbfs: float | None


@dataclass(frozen=True)
class Analysis:
    duration: float
    scene_changes: tuple[float, ...]
    scene_scores: tuple[float, ...]
    chapters: tuple[Chapter, ...]
    black_segments: tuple[Interval, ...]
    silence_segments: tuple[Interval, ...]
    loudness: Loudness | None
    wall_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        def clean(x):
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x
        return json.dumps(clean(self.to_dict()), sort_keys=True)


_NUM = r"(-?(?:\d+(?:\.\d+)?(?:e[-+]?\d+)?|inf|nan))"
_SHOWINFO = re.compile(r"\[Parsed_showinfo_\d+ @ [^\]]+\] n:\s*\d+ .*?pts_time:" + _NUM)
_SCENE_SCORE = re.compile(r"lavfi\.scene_score=" + _NUM)
_BLACK = re.compile(r"black_start:" + _NUM + r"\s+black_end:" + _NUM)
_SIL_START = re.compile(r"silence_start: " + _NUM)
_SIL_END = re.compile(r"silence_end: " + _NUM)


def _f(s: str) -> float:
    return float(s)


def parse_scene_changes(stderr: str) -> list[float]:
    return [_f(m.group(1)) for m in _SHOWINFO.finditer(stderr)]


def parse_black(stderr: str) -> list[Interval]:
    return [Interval(_f(a), _f(b)) for a, b in _BLACK.findall(stderr)]


def parse_silence(stderr: str, duration: float) -> list[Interval]:
    out, start = [], None
    for line in stderr.splitlines():
        m = _SIL_START.search(line)
        if m:
            start = max(0.0, _f(m.group(1)))
            continue
        m = _SIL_END.search(line)
        if m and start is not None:
            out.append(Interval(start, _f(m.group(1))))
            start = None
    if start is not None:  # silent until the end
        out.append(Interval(start, duration))
    return out


def parse_loudness(stderr: str) -> Loudness | None:
    idx = stderr.rfind("Summary:")
    if idx < 0:
        return None
    tail = stderr[idx:]

    def grab(pattern: str) -> float | None:
        m = re.search(pattern + r"\s*" + _NUM, tail)
        if not m:
            return None
        v = float(m.group(1))
        return v if math.isfinite(v) else None

    integrated = grab(r"I:")
    if integrated is not None and integrated <= -70.0:
        integrated = None
    return Loudness(integrated, grab(r"LRA:"), grab(r"Peak:"))


def chapters_from_scenes(scenes: list[float], duration: float, min_chapter: float) -> list[Chapter]:
    """Chapter boundaries at scene changes; a cut closer than ``min_chapter`` to the previous
    boundary (or to the end) is ignored."""
    bounds = [0.0]
    for t in sorted(scenes):
        if t - bounds[-1] >= min_chapter and duration - t >= min_chapter:
            bounds.append(t)
    bounds.append(max(duration, bounds[-1]))
    return [Chapter(i, round(a, 3), round(b, 3), f"Chapter {i + 1}")
            for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def analyze(src: str | os.PathLike[str], *, info: MediaInfo | None = None,
            scene_threshold: float = DEFAULT_SCENE_THRESHOLD, min_chapter_seconds: float = DEFAULT_MIN_CHAPTER_SECONDS,
            black_min_duration: float = DEFAULT_BLACK_MIN_DURATION,
            black_pixel_threshold: float = DEFAULT_BLACK_PIXEL_THRESHOLD,
            silence_noise_db: float = DEFAULT_SILENCE_NOISE_DB,
            silence_min_duration: float = DEFAULT_SILENCE_MIN_DURATION,
            progress: fc.Progress | None = None) -> Analysis:
    info = info or probe(src)
    if not info.has_video and not info.has_audio:
        raise ValueError(f"{src}: nothing to analyse")
    args = fc.analysis_args(Path(src), has_video=info.has_video, has_audio=info.has_audio,
                            scene_threshold=scene_threshold, black_min_duration=black_min_duration,
                            black_pixel_threshold=black_pixel_threshold, silence_noise_db=silence_noise_db,
                            silence_min_duration=silence_min_duration)
    res = fc.run_ffmpeg(args, duration=info.duration, progress=progress)
    err = res.stderr
    scenes = parse_scene_changes(err) if info.has_video else []
    chapters = chapters_from_scenes(scenes, info.duration, min_chapter_seconds) if info.has_video else []
    return Analysis(
        duration=info.duration, scene_changes=tuple(scenes),
        scene_scores=tuple(_f(x) for x in _SCENE_SCORE.findall(err)),
        chapters=tuple(chapters), black_segments=tuple(parse_black(err)) if info.has_video else (),
        silence_segments=tuple(parse_silence(err, info.duration)) if info.has_audio else (),
        loudness=parse_loudness(err) if info.has_audio else None, wall_seconds=res.wall_seconds)
