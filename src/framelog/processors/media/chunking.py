"""The chunk plan of a chunked transcode: which stretches of the source each chunk job encodes.

A video is cut on the HLS segment grid into chunks of ``media.transcoding.chunk_seconds``
(a multiple of ``hls_config.segment_duration``), so every chunk starts on a segment
boundary, every segment belongs to exactly one chunk and a chunk's segments are
numbered on from the previous chunk's (``first_segment``): the stitched playlist is
the chunks' segments in order, one continuous VOD with no discontinuity.

A tail shorter than ``min_tail`` segments' worth (a 61 s video with 60 s chunks) is
folded into the chunk before it rather than being a job of its own, so no chunk job
costs more in start-up (seek, encoder warm-up, S3 round trips) than it encodes.

Pure: numbers in, plan out; no ffmpeg, no Kafka, no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# Rounding slack for float durations (a probe's 60.000001 s is 60 s).
EPSILON = 1e-3


@dataclass(frozen=True)
class Chunk:
    """One chunk job's stretch ``[start, end)`` of the source in seconds, on the segment grid."""
    index: int
    start: float
    end: float
    first_segment: int       # the segment number of the chunk's first segment (the stitched playlist's order)
    segment_count: int       # segments the chunk writes (its last one may be short: the video's tail)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class ChunkPlan:
    duration: float
    chunk_seconds: int
    segment_seconds: int
    chunks: tuple[Chunk, ...]

    @property
    def count(self) -> int:
        return len(self.chunks)

    @property
    def segment_count(self) -> int:
        return sum(c.segment_count for c in self.chunks)

    def chunk(self, index: int) -> Chunk:
        return self.chunks[index]

    def chunk_at(self, t: float) -> Chunk:
        """The chunk holding media time ``t`` (the last chunk for ``t`` at or past the end)."""
        for c in self.chunks:
            if c.start <= t < c.end:
                return c
        return self.chunks[-1] if t >= 0 else self.chunks[0]


def check_chunk_seconds(chunk_seconds: float, segment_seconds: int) -> int:
    """``chunk_seconds`` as whole seconds, or ValueError if it is not a positive multiple of the segment."""
    if segment_seconds <= 0:
        raise ValueError(f"segment duration must be positive, got {segment_seconds}")
    whole = round(chunk_seconds)
    if abs(chunk_seconds - whole) > EPSILON or whole <= 0 or whole % segment_seconds:
        raise ValueError(f"chunk length {chunk_seconds:g}s is not a positive multiple of the "
                         f"{segment_seconds}s HLS segment")
    return whole


def plan_chunks(duration: float, chunk_seconds: float, segment_seconds: int, *, min_tail: int = 1) -> ChunkPlan:
    """Cut ``duration`` seconds into segment-aligned chunks of ``chunk_seconds``.

    Every boundary but the video's end is a multiple of ``chunk_seconds`` (hence of
    the segment); the last chunk ends at ``duration``. A tail of fewer than
    ``min_tail`` whole segments joins the chunk before it (``min_tail=0`` never folds).
    """
    if not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"cannot plan chunks for a video of {duration!r} seconds")
    size = check_chunk_seconds(chunk_seconds, segment_seconds)
    per_chunk = size // segment_seconds
    starts = [i * size for i in range(max(1, math.ceil(duration / size - EPSILON)))]
    if len(starts) > 1 and duration - starts[-1] < min_tail * segment_seconds - EPSILON:
        starts.pop()
    chunks = []
    for i, start in enumerate(starts):
        end = float(starts[i + 1]) if i + 1 < len(starts) else duration
        segments = per_chunk if i + 1 < len(starts) else max(1, math.ceil((end - start) / segment_seconds - EPSILON))
        chunks.append(Chunk(i, float(start), end, i * per_chunk, segments))
    return ChunkPlan(duration, size, segment_seconds, tuple(chunks))
