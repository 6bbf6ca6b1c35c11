"""Chunked HLS: one chunk's ladder, the whole file's audio once, and the stitched playlists.

A chunk job encodes ``[start, end)`` of the source into every rung in one decode
(ffmpeg_commands.hls_chunk_args): video-only MPEG-TS segments, numbered on the
video's segment grid, with timestamps at their media time plus CHUNK_TS_BASE. The
audio is encoded once for the whole file as its own rendition (hls_audio_args), on
the same timeline, so nothing is cut at a chunk boundary. The stitch writes, per
rung, one media playlist listing every chunk's segments in order: one continuous
VOD (or, while chunks are still coming, an EVENT playlist of the leading chunks
done so far), with no EXT-X-DISCONTINUITY: there is none to declare.

Every chunk and the audio use the video's one AES-128 key and IV, so one
EXT-X-KEY line heads each stitched playlist.

Free of Kafka and of object storage: files in, files and descriptions out.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from framelog.processors.media import decode_check
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.chunking import Chunk
from framelog.processors.media.hls import (
    AUDIO_CODEC,
    PLAYLIST_NAME,
    Rendition,
    Segment,
    parse_media_playlist,
    probe_codec,
    write_key_info,
    write_local_playlist,
)

AUDIO_NAME = "audio"
# Error lines that are the worker's or the storage's trouble, not the source's: retried, never "corrupt".
WORKER_TROUBLE = ("No space left on device", "Cannot allocate memory", "Connection refused", "HTTP error",
                  "Server returned", "Connection reset", "timed out", "I/O error")


class ChunkCorrupt(fc.FfmpegError):
    """The chunk's source stretch does not decode: retrying cannot help. ``public`` names the time range."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str, reason: str):
        super().__init__(args, returncode, stderr)
        self.reason = reason                 # "corrupt: undecodable frames at 00:41:20-00:41:30"
        self.public = reason


@dataclass(frozen=True)
class RungSegments:
    """What one chunk (or the audio job) wrote for one rendition."""
    name: str
    codecs: str                          # "avc1.64001e" (video) or "mp4a.40.2" (audio)
    segments: tuple[Segment, ...]
    key_line: str                        # the playlist's EXT-X-KEY line, "" when not encrypted

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> RungSegments:
        return cls(d["name"], d["codecs"], tuple(Segment(**s) for s in d["segments"]), d.get("key_line", ""))


@dataclass(frozen=True)
class ChunkOutput:
    """One chunk job's result: per rung, the segments it wrote (file names are the video's segment numbers)."""
    index: int
    start: float
    end: float
    rungs: tuple[RungSegments, ...]
    frames: int | None                   # decoded frames of the chunk's stretch (decode log), None if unknown
    wall_seconds: float

    def to_dict(self) -> dict:
        return {"index": self.index, "start": self.start, "end": self.end, "frames": self.frames,
                "wall_seconds": self.wall_seconds, "rungs": [r.to_dict() for r in self.rungs]}

    @classmethod
    def from_dict(cls, d: Mapping) -> ChunkOutput:
        return cls(d["index"], d["start"], d["end"], tuple(RungSegments.from_dict(r) for r in d["rungs"]),
                   d.get("frames"), d.get("wall_seconds", 0.0))

    def rung(self, name: str) -> RungSegments:
        return next(r for r in self.rungs if r.name == name)


@dataclass(frozen=True)
class KeyMaterial:
    """The video's AES-128 key, IV and key URI (the same for every chunk and the audio)."""
    key: bytes
    iv: bytes
    uri: str


_KEY_LINE = re.compile(r"^#EXT-X-KEY:.*$", re.M)


def _read_rung(out_dir: Path, name: str, codecs: str) -> RungSegments:
    playlist = out_dir / name / PLAYLIST_NAME
    segs = tuple(Segment(uri, dur, (playlist.parent / uri).stat().st_size)
                 for uri, dur in parse_media_playlist(playlist))
    if not segs:
        raise fc.FfmpegError(["hls"], 1, f"{name}: the playlist lists no segments")
    m = _KEY_LINE.search(playlist.read_text())
    return RungSegments(name, codecs, segs, m.group(0) if m else "")


def _with_key(work: Path, key: KeyMaterial | None) -> tuple[Path | None, Path | None]:
    if key is None:
        return None, None
    return write_key_info(work, key.key, key.iv, key.uri), work / "aes128.key"


def encode_chunk(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], chunk: Chunk,
                 rungs: Sequence[fc.RungSpec], *, fps: float, segment_seconds: int, key: KeyMaterial | None,
                 preset: str = fc.DEFAULT_PRESET, conditioning: fc.Conditioning = fc.NO_CONDITIONING,
                 duration: float | None = None, progress: fc.Progress | None = None) -> ChunkOutput:
    """Encode one chunk's ladder into ``out_dir/<rung>/segment_NNNNN.ts`` (+ a chunk-local playlist).

    A stretch that does not decode raises ChunkCorrupt with the video's time range
    (corrupt_reason); any other ffmpeg failure raises FfmpegError (retryable).
    """
    started = time.monotonic()
    out = Path(out_dir)
    for r in rungs:
        (out / r.name).mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="framelog-chunk-key-"))
    try:
        key_info, key_path = _with_key(private, key)
        args = fc.hls_chunk_args(src, out, rungs, fps=fps, start=chunk.start, end=chunk.end,
                                 first_segment=chunk.first_segment, segment_seconds=segment_seconds,
                                 key_info_file=key_info, preset=preset, conditioning=conditioning)
        result = fc.run_ffmpeg(args, duration=chunk.duration, progress=progress, check=False)
        if result.returncode < 0:                  # killed (a timeout, a shutdown): not the source's fault
            raise fc.FfmpegError(args, result.returncode, result.stderr)
        reason = corrupt_reason(result.stderr, chunk, grid=segment_seconds, duration=duration)
        if reason is not None:
            raise ChunkCorrupt(args, result.returncode, result.stderr, reason)
        if result.returncode != 0:
            raise fc.FfmpegError(args, result.returncode, result.stderr)
        frames = decode_check.parse_decode_log(result.stderr, offset=chunk.start).frames
        written = []
        for r in rungs:
            first = out / r.name / parse_media_playlist(out / r.name / PLAYLIST_NAME)[0][0]
            local = write_local_playlist(out / r.name / PLAYLIST_NAME, key_path, private / f"{r.name}.m3u8")
            codecs = probe_codec(local) if first.exists() else ""
            written.append(_read_rung(out, r.name, codecs))
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return ChunkOutput(chunk.index, chunk.start, chunk.end, tuple(written), frames, time.monotonic() - started)


def corrupt_reason(stderr: str, chunk: Chunk, *, grid: int, duration: float | None) -> str | None:
    """``corrupt: undecodable frames at HH:MM:SS-HH:MM:SS`` if the chunk's own stretch failed to decode.

    The decoder reads a little past the chunk's end (the demuxer's look-ahead): an error at or after
    ``chunk.end`` is the next chunk's to report, and the log of a worker's or the storage's trouble
    (WORKER_TROUBLE) is never the source's fault. The reason is decode_check's (the segment grid).
    """
    if any(words in stderr for words in WORKER_TROUBLE):
        return None
    log = decode_check.parse_decode_log(stderr, offset=chunk.start)
    own = [t for t in log.error_times if t < chunk.end - 1e-6]
    if not own:
        return None
    return "corrupt: " + decode_check.corrupt_message(*decode_check.stretch(own, grid=grid, duration=duration))


def encode_audio(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, segment_seconds: int,
                 key: KeyMaterial | None, audio_bitrate: int = fc.DEFAULT_AUDIO_BITRATE, audio_stream: int = 0,
                 duration: float | None = None, progress: fc.Progress | None = None) -> RungSegments:
    """The whole file's audio, once, as the ``audio`` rendition under ``out_dir/audio/``."""
    out = Path(out_dir)
    (out / AUDIO_NAME).mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="framelog-audio-key-"))
    try:
        key_info, _ = _with_key(private, key)
        fc.run_ffmpeg(fc.hls_audio_args(src, out, name=AUDIO_NAME, segment_seconds=segment_seconds,
                                        key_info_file=key_info, audio_bitrate=audio_bitrate,
                                        audio_stream=audio_stream), duration=duration, progress=progress)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return _read_rung(out, AUDIO_NAME, AUDIO_CODEC)


# ---------------------------------------------------------------- the stitch

def media_playlist(segments: Sequence[Segment], *, key_line: str, ended: bool, playlist_type: str = "VOD") -> str:
    """One rung's playlist over the chunks' segments in order: no discontinuity (the timestamps run on).

    ``ended`` False gives the growing EVENT playlist of a video still being processed.
    """
    target = max(1, math.ceil(max((s.duration for s in segments), default=1.0)))
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0",
             f"#EXT-X-PLAYLIST-TYPE:{playlist_type if ended else 'EVENT'}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if key_line:
        lines.append(key_line)
    for s in segments:
        lines += [f"#EXTINF:{s.duration:.6f},", s.name]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def leading_chunks(outputs: Mapping[int, ChunkOutput], count: int) -> list[ChunkOutput]:
    """The chunks done from chunk 0 on without a gap (what a growing playlist may list)."""
    lead = []
    for i in range(count):
        if i not in outputs:
            break
        lead.append(outputs[i])
    return lead


def leading_by_rung(outputs: Mapping[int, ChunkOutput], count: int,
                    rungs: Sequence[str]) -> dict[str, list[ChunkOutput]]:
    """Per rung, the chunks done from chunk 0 on without a gap that wrote that rung (its growing playlist's
    chunks); a rung none of whose leading chunks is in yet is left out. A chunk job writes its whole ladder
    today, so the rungs grow together, but a rung joins only with its own segments on the edge."""
    found: dict[str, list[ChunkOutput]] = {}
    for name in rungs:
        lead = []
        for o in leading_chunks(outputs, count):
            if not any(r.name == name and r.segments for r in o.rungs):
                break
            lead.append(o)
        if lead:
            found[name] = lead
    return found


def stitched_segments(outputs: Sequence[ChunkOutput], rung: str) -> tuple[Segment, ...]:
    return tuple(s for o in sorted(outputs, key=lambda o: o.index) for s in o.rung(rung).segments)


def stitched_rendition(spec: fc.RungSpec, outputs: Sequence[ChunkOutput], *, fps: float,
                       audio: RungSegments | None) -> Rendition:
    """The rung's Rendition as a single pass would describe it: measured BANDWIDTH (video plus the audio
    rendition the variant plays with), AVERAGE-BANDWIDTH, CODECS with the audio's codec."""
    segs = stitched_segments(outputs, spec.name)
    total = sum(s.duration for s in segs)
    size = sum(s.size for s in segs)
    full = [s for s in segs if s.duration >= 0.5 * max(x.duration for x in segs)] or list(segs)
    audio_avg = 0
    if audio is not None and audio.segments:
        audio_avg = int(sum(s.size for s in audio.segments) * 8 / max(sum(s.duration for s in audio.segments), 1e-3))
    peak = max(s.bitrate for s in full) + audio_avg
    avg = (int(size * 8 / total) if total > 0 else 0) + audio_avg
    codecs = outputs[0].rung(spec.name).codecs + (f",{AUDIO_CODEC}" if audio is not None else "")
    return Rendition(spec.name, spec.width, spec.height, fps, spec.video_bitrate, max(peak, avg), avg, codecs,
                     f"{spec.name}/{PLAYLIST_NAME}", total, size, segs)


def audio_rendition(audio: RungSegments) -> Rendition:
    total = sum(s.duration for s in audio.segments)
    size = sum(s.size for s in audio.segments)
    avg = int(size * 8 / total) if total > 0 else 0
    return Rendition(AUDIO_NAME, 0, 0, 0.0, avg, avg, avg, AUDIO_CODEC, f"{AUDIO_NAME}/{PLAYLIST_NAME}", total, size,
                     audio.segments)
