"""HLS packaging: one ffmpeg decode -> every rung, AES-128, framelog's own master playlist.

Layout written under ``out_dir`` (everything there is meant for the CDN)::

    master.m3u8
    <rung name>/playlist.m3u8
    <rung name>/segment_00000.ts ...

The AES-128 key never lands in ``out_dir``: it is written to a private temp
directory for ffmpeg (``-hls_key_info_file``: key URI, key file, IV) and
returned as bytes, for framelog's key endpoint, which checks access before serving it. The
playlists name the key as ``hls_config.key_uri_base`` + "/" + video_id: by default a path with
no host (``/v1/keys/<id>``), which the edges rewrite to the public key URL as they serve it
(processors/public_urls.py), so a domain change needs no re-transcode.

The master playlist follows the seed's template (``#EXT-X-VERSION:6``) with
measured figures: BANDWIDTH is the peak segment bitrate (bytes*8/EXTINF of the
largest-rate segment), AVERAGE-BANDWIDTH the whole rendition's bytes*8 over its
duration, both from the files as written (ffmpeg's nominal bitrates under-state
them). CODECS is ``avc1.PPCCLL`` from ffprobe of the rendition (profile and
level) plus ``mp4a.40.2`` only when the source has audio.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.ladder import Level, Rung, plan_ladder
from framelog.processors.media.probe import MediaInfo, probe

MASTER_NAME = "master.m3u8"
SUBTITLES_DIR = "subtitles"
SUBTITLES_GROUP = "subs"
AUDIO_GROUP = "aud"
MPEGTS_CLOCK = 90000
PLAYLIST_NAME = "playlist.m3u8"
AUDIO_CODEC = "mp4a.40.2"
MAX_FPS = 60.0
DEFAULT_FPS = 30.0

_AVC_PROFILES = {
    "constrained baseline": "42e0", "baseline": "4200", "main": "4d40", "extended": "5800", "high": "6400",
    "high 10": "6e00", "high 4:2:2": "7a00", "high 4:4:4 predictive": "f400",
}


class HlsSettings(Protocol):  # framelog.core.config.HlsConfig fits (read-only: configs are frozen)
    @property
    def segment_duration(self) -> int: ...
    @property
    def playlist_type(self) -> str: ...  # "VOD" or "EVENT"
    @property
    def encryption(self) -> bool: ...
    @property
    def key_uri_base(self) -> str: ...
    @property
    def quality_levels(self) -> Sequence[Level]: ...


@dataclass(frozen=True)
class Segment:
    name: str          # file name inside the rendition directory
    duration: float    # EXTINF seconds
    size: int          # bytes (encrypted size when encrypted)

    @property
    def bitrate(self) -> int:
        return int(self.size * 8 / self.duration) if self.duration > 0 else 0


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    frame_rate: float
    target_bitrate: int      # what the encoder was asked for
    bandwidth: int           # measured peak segment bitrate -> BANDWIDTH
    average_bandwidth: int   # measured mean bitrate -> AVERAGE-BANDWIDTH
    codecs: str              # e.g. "avc1.64001f,mp4a.40.2"
    playlist: str            # relative to out_dir, e.g. "720p/playlist.m3u8"
    duration: float
    size: int                # bytes of all segments
    segments: tuple[Segment, ...]

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class HlsResult:
    video_id: str
    out_dir: Path
    master_playlist: Path
    renditions: tuple[Rendition, ...]
    segment_duration: int
    encrypted: bool
    key: bytes | None = field(repr=False)
    iv: bytes | None
    key_uri: str | None
    has_audio: bool
    wall_seconds: float
    audio: Rendition | None = None   # a chunked transcode's audio, encoded once: its own rendition (EXT-X-MEDIA)

    @property
    def iv_hex(self) -> str | None:
        return f"0x{self.iv.hex()}" if self.iv else None

    def rendition(self, name: str) -> Rendition:
        return next(r for r in self.renditions if r.name == name)

    def to_dict(self) -> dict:
        """JSON-safe description (the key itself is left out)."""
        d = asdict(self)
        d.pop("key")
        d["out_dir"] = str(self.out_dir)
        d["master_playlist"] = str(self.master_playlist)
        d["iv"] = self.iv_hex
        return d


# ---------------------------------------------------------------- helpers

def output_fps(info: MediaInfo) -> float:
    """Constant output frame rate: the source's average rate, capped at 60."""
    fps = info.fps if info.fps and info.fps > 0 else DEFAULT_FPS
    return min(fps, MAX_FPS)


def write_key_info(key_dir: Path, key: bytes, iv: bytes, key_uri: str) -> Path:
    """Key file + key info file for ``-hls_key_info_file`` (URI line, key path line, IV hex line)."""
    key_dir.mkdir(parents=True, exist_ok=True)
    key_path = key_dir / "aes128.key"
    key_path.write_bytes(key)
    os.chmod(key_path, 0o600)
    info_path = key_dir / "aes128.keyinfo"
    info_path.write_text(f"{key_uri}\n{key_path}\n{iv.hex()}\n")
    return info_path


_EXTINF = re.compile(r"^#EXTINF:([0-9.]+)")


def parse_media_playlist(path: Path) -> list[tuple[str, float]]:
    """(segment URI, EXTINF duration) in playlist order."""
    out, pending = [], None
    for line in path.read_text().splitlines():
        line = line.strip()
        m = _EXTINF.match(line)
        if m:
            pending = float(m.group(1))
        elif line and not line.startswith("#") and pending is not None:
            out.append((line, pending))
            pending = None
    return out


def write_local_playlist(playlist: Path, key_path: Path | None, dest: Path) -> Path:
    """A copy of a media playlist that ffmpeg/ffprobe can read offline.

    Segment URIs become absolute paths and the key URI points at ``key_path``
    (read with ``-allowed_extensions ALL``, see ffmpeg_commands.hls_input_options).
    Written to ``dest`` (keep it out of the CDN directory).
    """
    base = playlist.parent.resolve()
    lines = []
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXT-X-KEY") and key_path is not None:
            line = re.sub(r'URI="[^"]*"', f'URI="{key_path.resolve()}"', line)
        elif line and not line.startswith("#"):
            line = str(base / line)
        lines.append(line)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(lines) + "\n")
    return dest


def avc_codec_string(profile: str | None, level: int | None) -> str:
    """'High', 31 -> 'avc1.64001f'."""
    prof = _AVC_PROFILES.get((profile or "high").strip().lower(), "6400")
    lvl = int(level) if level and int(level) > 0 else 40
    return f"avc1.{prof}{lvl:02x}"


def probe_codec(local_playlist: Path) -> str:
    """CODECS of the video rendition a (local) playlist lists: ``avc1.PPCCLL`` from ffprobe."""
    data = fc.run_json(fc.ffprobe_args(local_playlist, select="v:0", entries="stream=profile,level",
                                       extra=fc.hls_input_options()))
    s = (data.get("streams") or [{}])[0]
    return avc_codec_string(s.get("profile"), s.get("level"))


def measure_rendition(rung: Rung, out_dir: Path, fps: float, codecs: str) -> Rendition:
    playlist = out_dir / rung.name / PLAYLIST_NAME
    segs = tuple(Segment(uri, dur, (playlist.parent / uri).stat().st_size)
                 for uri, dur in parse_media_playlist(playlist))
    if not segs:
        raise fc.FfmpegError(["hls"], 1, f"{playlist} lists no segments")
    total = sum(s.duration for s in segs)
    size = sum(s.size for s in segs)
    # Peak over segments; a very short tail segment (< 1/2 target) is not representative of the rate.
    full = [s for s in segs if s.duration >= 0.5 * max(x.duration for x in segs)] or list(segs)
    peak = max(s.bitrate for s in full)
    avg = int(size * 8 / total) if total > 0 else peak
    return Rendition(rung.name, rung.width, rung.height, fps, rung.video_bitrate, max(peak, avg), avg, codecs,
                     f"{rung.name}/{PLAYLIST_NAME}", total, size, segs)


@dataclass(frozen=True)
class SubtitleTrack:
    """A WebVTT subtitles rendition (EXT-X-MEDIA TYPE=SUBTITLES) of the master playlist."""
    language: str      # BCP 47, e.g. "en-US"
    name: str          # what a player's menu shows
    playlist: str      # relative to out_dir, e.g. "subtitles/en-us/playlist.m3u8"
    default: bool = False


def master_playlist_text(renditions: Iterable[Rendition], subtitles: Sequence[SubtitleTrack] = (),
                         audio: Rendition | None = None) -> str:
    """The seed's master template (#EXT-X-VERSION:6), one EXT-X-STREAM-INF per rendition.

    Subtitle tracks become EXT-X-MEDIA TYPE=SUBTITLES entries of one group that
    every variant names (RFC 8216 §4.3.4.1 and §4.3.4.2, SUBTITLES attribute).
    A separate ``audio`` rendition (a chunked transcode's, encoded once) is an
    EXT-X-MEDIA TYPE=AUDIO entry every variant names (AUDIO attribute); the
    variants' BANDWIDTH already counts it.
    """
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="{audio.name}",DEFAULT=YES,'
                     f'AUTOSELECT=YES,CHANNELS="2",URI="{audio.playlist}"')
    for t in subtitles:
        yes_no = "YES" if t.default else "NO"
        lines.append(f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="{SUBTITLES_GROUP}",NAME="{t.name}",'
                     f'LANGUAGE="{t.language}",DEFAULT={yes_no},AUTOSELECT=YES,FORCED=NO,URI="{t.playlist}"')
    group = f',SUBTITLES="{SUBTITLES_GROUP}"' if subtitles else ""
    group += f',AUDIO="{AUDIO_GROUP}"' if audio is not None else ""
    for r in renditions:
        lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={r.bandwidth},AVERAGE-BANDWIDTH={r.average_bandwidth},"
                     f"RESOLUTION={r.resolution},FRAME-RATE={r.frame_rate:.3f},CODECS=\"{r.codecs}\"{group}")
        lines.append(r.playlist)
    return "\n".join(lines) + "\n"


def write_master(out_dir: Path, renditions: Iterable[Rendition], subtitles: Sequence[SubtitleTrack] = (),
                 audio: Rendition | None = None) -> Path:
    master = Path(out_dir) / MASTER_NAME
    master.write_text(master_playlist_text(renditions, subtitles, audio))
    return master


def write_subtitle_track(out_dir: Path, segments: Sequence[tuple[float, str]], *, language: str,
                         name: str, playlist_type: str = "VOD") -> SubtitleTrack:
    """WebVTT segments (duration, text) and their media playlist under ``subtitles/<language>/``.

    The segments should follow the video's segmentation (same target duration),
    each holding every cue shown during it, so a player fetches captions as it
    fetches video.
    """
    rel = f"{SUBTITLES_DIR}/{language.lower()}"
    directory = Path(out_dir) / rel
    directory.mkdir(parents=True, exist_ok=True)
    target = max(1, math.ceil(max((d for d, _ in segments), default=1.0)))
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0",
             f"#EXT-X-PLAYLIST-TYPE:{playlist_type}"]
    for i, (duration, text) in enumerate(segments):
        seg = f"segment_{i:05d}.vtt"
        (directory / seg).write_text(text)
        lines += [f"#EXTINF:{duration:.3f},", seg]
    lines.append("#EXT-X-ENDLIST")
    (directory / PLAYLIST_NAME).write_text("\n".join(lines) + "\n")
    return SubtitleTrack(language, name, f"{rel}/{PLAYLIST_NAME}")


def media_start_pts(result: HlsResult, scratch: Path) -> int:
    """The 90 kHz MPEG-TS timestamp at which the renditions start (ffmpeg shifts them,
    typically to 1.4 s): what a WebVTT X-TIMESTAMP-MAP ties cue time 0 to."""
    key_path = None
    if result.key:
        key_path = scratch / "start-pts.key"
        key_path.write_bytes(result.key)
    first = result.renditions[0]
    local = write_local_playlist(result.out_dir / first.playlist, key_path, scratch / "start-pts.m3u8")
    data = fc.run_json(fc.ffprobe_args(local, entries="format=start_time", extra=fc.hls_input_options()))
    return round(float((data.get("format") or {}).get("start_time") or 0.0) * MPEGTS_CLOCK)


# ---------------------------------------------------------------- the job

def package_hls(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], video_id: str, hls: HlsSettings, *,
                info: MediaInfo | None = None, rungs: Sequence[Rung] | None = None,
                preset: str = fc.DEFAULT_PRESET, audio_bitrate: int = fc.DEFAULT_AUDIO_BITRATE,
                encrypt: bool | None = None, key: bytes | None = None, iv: bytes | None = None,
                key_uri: str | None = None, progress: fc.Progress | None = None) -> HlsResult:
    """Transcode ``src`` into the ladder's HLS renditions with a single decode.

    ``encrypt`` defaults to ``hls.encryption``; ``key``/``iv`` default to fresh
    random 16 bytes; ``key_uri`` to ``hls.key_uri_base + "/" + video_id``.
    """
    started = time.monotonic()
    src = Path(src)
    out = Path(out_dir)
    info = info or probe(src)
    rungs = list(rungs) if rungs is not None else plan_ladder(info, hls.quality_levels)
    fps = output_fps(info)
    encrypt = hls.encryption if encrypt is None else encrypt
    for r in rungs:
        (out / r.name).mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="framelog-hls-key-"))
    try:
        key_info = key_path = None
        if encrypt:
            key = key or os.urandom(16)
            iv = iv or os.urandom(16)
            if len(key) != 16 or len(iv) != 16:
                raise ValueError("AES-128 key and IV must be 16 bytes")
            key_uri = key_uri or f"{hls.key_uri_base.rstrip('/')}/{video_id}"
            key_info = write_key_info(private, key, iv, key_uri)
            key_path = private / "aes128.key"
        else:
            key = iv = key_uri = None
        args = fc.hls_ladder_args(src, out, [r.spec() for r in rungs], fps=fps, has_audio=info.has_audio,
                                  segment_seconds=hls.segment_duration, key_info_file=key_info, preset=preset,
                                  audio_bitrate=audio_bitrate, playlist_type=hls.playlist_type,
                                  conditioning=info.conditioning(), audio_stream=info.audio_index)
        fc.run_ffmpeg(args, duration=info.duration, progress=progress)
        renditions = []
        for r in rungs:
            local = write_local_playlist(out / r.name / PLAYLIST_NAME, key_path, private / f"{r.name}.m3u8")
            codecs = probe_codec(local) + (f",{AUDIO_CODEC}" if info.has_audio else "")
            renditions.append(measure_rendition(r, out, fps, codecs))
    finally:
        shutil.rmtree(private, ignore_errors=True)
    master = write_master(out, renditions)
    return HlsResult(video_id, out, master, tuple(renditions), hls.segment_duration, bool(encrypt), key, iv, key_uri,
                     info.has_audio, time.monotonic() - started)


def hls_result_from_dict(d: dict, out_dir: Path, key: bytes | None) -> HlsResult:
    """Rebuild an HlsResult from ``to_dict()`` output (the key travels separately)."""
    def rendition(r: dict) -> Rendition:
        return Rendition(**{**r, "segments": tuple(Segment(**s) for s in r["segments"])})

    renditions = tuple(rendition(r) for r in d["renditions"])
    iv = d.get("iv")
    return HlsResult(video_id=d["video_id"], out_dir=Path(out_dir), master_playlist=Path(out_dir) / MASTER_NAME,
                     renditions=renditions, segment_duration=d["segment_duration"], encrypted=d["encrypted"],
                     key=key, iv=bytes.fromhex(iv[2:]) if iv else None, key_uri=d.get("key_uri"),
                     has_audio=d["has_audio"], wall_seconds=d.get("wall_seconds", 0.0),
                     audio=rendition(d["audio"]) if d.get("audio") else None)
