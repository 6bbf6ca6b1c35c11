"""Every ffmpeg and ffprobe command line framelog runs, and the runner.

This is the one module that knows ffmpeg's options (like PeerTube's
``ffmpeg-commands``): the other media modules describe *what* they want and call
a builder here, then :func:`run_ffmpeg` / :func:`ffprobe_json`. Builders return
plain argument lists (``[ffmpeg, ...]``) so commands can be logged, tested and
compared (filter graphs are strings: the ladder's ``-var_stream_map`` and the
conditioning chains are beyond ffmpeg-python's model, so it is not used).

Long commands report progress with ``-progress pipe:1``: ffmpeg writes
``out_time_us=...`` key/value blocks on stdout, which :func:`run_ffmpeg` turns
into a fraction of the known duration for the ``progress`` callback.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from framelog.core import child_processes
from framelog.core.errors import FramelogError

Progress = Callable[[float], None]
PathLike = str | os.PathLike[str]

FFMPEG = os.environ.get("FRAMELOG_FFMPEG", shutil.which("ffmpeg") or "/usr/bin/ffmpeg")
FFPROBE = os.environ.get("FRAMELOG_FFPROBE", shutil.which("ffprobe") or "/usr/bin/ffprobe")

# Production default of the x264 speed/quality trade-off (tests pass "ultrafast").
# veryfast, not x264's medium: medium costs ~4.3 CPU-s per second of 1080p source
# for a 4-rung ladder here, which no 2-core worker can fit in the 30 min
# transcoding timeout for long uploads. Proposed config key: transcoding.x264_preset.
DEFAULT_PRESET = "veryfast"
DEFAULT_AUDIO_BITRATE = 128_000

# transcoding_profiles[].codec -> (ffmpeg encoder, its per-stream options). Only what an
# HLS player here can decode: h264 in MPEG-TS. libx265 is in Debian's ffmpeg, but HEVC
# in HLS needs fMP4 segments with the hvc1 tag and Debian's chromium (the player test's
# browser) cannot decode it, so "h265"/"hevc" are refused at config load, not half-made.
VIDEO_ENCODERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "h264": ("libx264", ("-profile:v", "high")),
}
# hls_config.playlist_type -> ffmpeg 5.1 hls muxer's -hls_playlist_type value.
HLS_PLAYLIST_TYPES = {"VOD": "vod", "EVENT": "event"}


# What a failed ffmpeg's stderr says, in words a user may read (FfmpegError.public): first match wins.
_PROBLEMS = (
    (("Could not find tag for codec", "not currently supported in container"),
     "a stream's codec cannot be stored in the output format"),
    (("No space left on device",), "the worker ran out of disk space"),
    (("Invalid data found when processing input", "moov atom not found", "partial file"),
     "the source has data that cannot be read or decoded"),
    (("Decoder (codec", "Unknown decoder", "unsupported codec", "is not supported"),
     "the source uses a codec this server cannot decode"),
    (("Cannot allocate memory", "Out of memory"), "the worker ran out of memory"),
    (("Connection refused", "HTTP error", "Server returned"), "the source could not be read from storage"),
)


class FfmpegError(FramelogError):
    """ffmpeg/ffprobe exited non-zero. ``public`` names the problem in words (no path, no tool output):
    what a user is shown; ``detail`` (the command's end of stderr) is for operators only."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str):
        tool = Path(args[0]).name
        tail = stderr.strip()[-2000:]
        super().__init__(f"{tool} exited with {returncode}: {tail}")
        self.args_list = list(args)
        self.returncode = returncode
        self.stderr = stderr
        self.detail = tail
        problem = next((words for needles, words in _PROBLEMS if any(n in stderr for n in needles)),
                       "it was killed" if returncode < 0 else "it failed")
        self.public = f"{tool}: {problem} (exit {returncode})"


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stderr: str
    wall_seconds: float


# ---------------------------------------------------------------- runners

def ffprobe_json(path: PathLike) -> dict:
    """ffprobe -show_format -show_streams as a dict."""
    return run_json(ffprobe_args(path))


def ffprobe_args(path: PathLike, *, select: str | None = None, entries: str | None = None,
                 extra: Sequence[str] = ()) -> list[str]:
    args = [FFPROBE, "-v", "error", *extra]
    if select:
        args += ["-select_streams", select]
    if entries:
        args += ["-show_entries", entries]
    else:
        args += ["-show_format", "-show_streams"]
    return args + ["-of", "json", str(path)]


def run_json(args: Sequence[str]) -> dict:
    proc = child_processes.run(args)
    if proc.returncode != 0:
        raise FfmpegError(args, proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return json.loads(proc.stdout or b"{}")


def run_ffmpeg(args: Sequence[str], *, duration: float | None = None, progress: Progress | None = None,
               check: bool = True) -> RunResult:
    """Run one ffmpeg command; stderr is captured (for filters that log results).

    With ``progress`` and a ``duration``, ``-progress pipe:1 -nostats`` is added
    and the callback receives fractions in [0, 1] (monotonic, ends with 1.0).
    """
    import time

    args = list(args)
    want_progress = progress is not None and duration and duration > 0
    if want_progress:
        args = [args[0], "-progress", "pipe:1", "-nostats", *args[1:]]
    start = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = child_processes.popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if want_progress else subprocess.DEVNULL, stderr=err)
        try:
            if want_progress:
                last = 0.0
                assert proc.stdout is not None
                for raw in proc.stdout:
                    key, _, value = raw.decode("ascii", "replace").strip().partition("=")
                    if key in ("out_time_us", "out_time_ms") and value.strip().lstrip("-").isdigit():
                        frac = min(1.0, max(0.0, int(value) / 1e6 / duration))
                        if frac > last:
                            last = frac
                            progress(frac)   # may raise to cancel (a stage timeout): ffmpeg is killed below
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            child_processes.forget(proc)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if check and rc != 0:
        raise FfmpegError(args, rc, stderr)
    if want_progress and rc == 0:
        progress(1.0)
    return RunResult(rc, stderr, time.monotonic() - start)


# ---------------------------------------------------------------- validation

# A decode's log that names when it failed (processors.media.decode_check): every decoded
# frame's time (-debug_ts) and each line's level, so errors are told from frame lines.
DECODE_LOG_OPTIONS = ("-loglevel", "level+info", "-debug_ts")


def decode_window_args(src: PathLike, start: float = 0.0, seconds: float | None = None) -> list[str]:
    """Decode the first video and audio stream of ``[start, start + seconds)`` (the whole file without
    ``seconds``), logging for decode_check. ``src`` may be an http(s) URL: ffmpeg seeks with range requests.

    No -xerror: the decode goes on past the first error so the log shows where a corrupt stretch ends.
    """
    window = (["-ss", f"{start:.3f}"] if start > 0 else []) + (["-t", f"{seconds:.3f}"] if seconds else [])
    return [FFMPEG, "-hide_banner", "-nostdin", "-nostats", *DECODE_LOG_OPTIONS, *window, "-i", str(src),
            "-map", "0:v:0", "-map", "0:a:0?", "-f", "null", "-"]


def count_frames_args(path: PathLike) -> list[str]:
    """Count decoded video frames of the first video stream (for still-image detection)."""
    return [FFPROBE, "-v", "error", "-select_streams", "v:0", "-count_frames", "-read_intervals", "%+#2",
            "-show_entries", "stream=nb_read_frames", "-of", "json", str(path)]


# ---------------------------------------------------------------- sources from cameras and editors

# Interlaced (1080i broadcast, camcorders): bwdif (motion-adaptive, better than yadif on
# edges), one frame out per frame in, every frame deinterlaced whatever its flag says.
DEINTERLACE = "bwdif=mode=send_frame:parity=auto:deint=all"
# HDR to SDR (Debian's ffmpeg has libzimg): linearise with the source's transfer (PQ or HLG),
# BT.2020 -> BT.709 primaries in float RGB, Hable tone curve (no desaturation), BT.709 transfer
# and matrix, limited range, 8-bit 4:2:0.
_TONEMAP = ("zscale=tin={tin}:min=bt2020nc:pin=bt2020:rin=tv:t=linear:npl=100,format=gbrpf32le,"
            "zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p")
HDR_TRANSFER_IN = {"pq": "smpte2084", "hlg": "arib-std-b67"}
# The tags an SDR output carries (x264's VUI); a player then shows BT.709 colours.
BT709_TAGS = ("-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv")
# Codecs an MP4 holds that browsers play: copied by the faststart remux; others are re-encoded.
MP4_VIDEO_CODECS = frozenset({"h264", "hevc", "av1", "vp9"})
MP4_AUDIO_CODECS = frozenset({"aac", "mp3"})


@dataclass(frozen=True)
class Conditioning:
    """What a source needs before it is scaled (probe.MediaInfo.conditioning). Non-square pixels need
    nothing here: every rung is scaled to a square-pixel size of the displayed aspect, then setsar=1."""
    deinterlace: bool = False
    hdr: str | None = None        # "pq" or "hlg": tone-mapped to BT.709 SDR

    def filters(self) -> list[str]:
        out = [DEINTERLACE] if self.deinterlace else []
        if self.hdr:
            out.append(_TONEMAP.format(tin=HDR_TRANSFER_IN[self.hdr]))
        return out

    def output_tags(self) -> tuple[str, ...]:
        return BT709_TAGS if self.hdr else ()


NO_CONDITIONING = Conditioning()   # a progressive SDR source


def _chain(*filters: str) -> str:
    return ",".join(f for f in filters if f)


# ---------------------------------------------------------------- the ladder

@dataclass(frozen=True)
class RungSpec:
    """What ffmpeg needs per rung (ladder.Rung carries more)."""
    name: str
    width: int
    height: int
    video_bitrate: int
    maxrate: int
    bufsize: int
    codec: str = "h264"      # a VIDEO_ENCODERS key


def _fps_expr(fps: float) -> str:
    for num, den in ((24000, 1001), (30000, 1001), (60000, 1001)):
        if abs(fps - num / den) < 0.005:
            return f"{num}/{den}"
    return f"{fps:g}" if fps == int(fps) else f"{fps:.3f}"


def _ladder_graph(rungs: Sequence[RungSpec], fps: float, conditioning: Conditioning) -> str:
    """One decode split into every rung: conditioning, constant frame rate, square-pixel sizes."""
    n = len(rungs)
    labels = "".join(f"[s{i}]" for i in range(n))
    parts = [f"[0:v:0]{_chain(*conditioning.filters(), f'fps={_fps_expr(fps)}', f'split={n}')}{labels}"]
    for i, r in enumerate(rungs):
        parts.append(f"[s{i}]scale={r.width}:{r.height}:flags=bicubic,setsar=1,format=yuv420p[v{i}]")
    return ";".join(parts)


def _ladder_video_codec_args(rungs: Sequence[RungSpec], *, fps: float, segment_seconds: int, preset: str,
                             conditioning: Conditioning) -> list[str]:
    """Per-rung encoders with a fixed GOP of one segment and keyframes forced on the segment grid (scene-cut
    keyframes off, closed GOPs), so segment boundaries line up across renditions and across chunks."""
    gop = max(1, round(fps * segment_seconds))
    args: list[str] = []
    for i, r in enumerate(rungs):
        encoder, options = VIDEO_ENCODERS[r.codec]
        args += [f"-c:v:{i}", encoder, *(f"{opt}:{i}" if opt.endswith(":v") else opt for opt in options)]
    args += ["-preset", preset, "-sc_threshold", "0",
             "-g", str(gop), "-keyint_min", str(gop), "-force_key_frames", f"expr:gte(t,n_forced*{segment_seconds})",
             "-flags", "+cgop", *conditioning.output_tags()]
    for i, r in enumerate(rungs):
        args += [f"-b:v:{i}", str(r.video_bitrate), f"-maxrate:v:{i}", str(r.maxrate),
                 f"-bufsize:v:{i}", str(r.bufsize)]
    return args


def _hls_output_args(out: Path, vsm: str, *, segment_seconds: int, playlist_type: str,
                     key_info_file: PathLike | None, start_number: int = 0) -> list[str]:
    args = ["-f", "hls", "-hls_time", str(segment_seconds),
            "-hls_playlist_type", HLS_PLAYLIST_TYPES[playlist_type.upper()],
            "-hls_segment_type", "mpegts", "-hls_list_size", "0", "-hls_flags", "independent_segments",
            "-start_number", str(start_number), "-hls_segment_filename", str(out / "%v" / "segment_%05d.ts")]
    if key_info_file is not None:
        args += ["-hls_key_info_file", str(key_info_file)]
    return args + ["-var_stream_map", vsm, str(out / "%v" / "playlist.m3u8")]


def hls_ladder_args(src: PathLike, out_dir: PathLike, rungs: Sequence[RungSpec], *, fps: float,
                    has_audio: bool, segment_seconds: int = 10, key_info_file: PathLike | None = None,
                    preset: str = DEFAULT_PRESET, audio_bitrate: int = DEFAULT_AUDIO_BITRATE,
                    threads: int = 0, playlist_type: str = "VOD", conditioning: Conditioning = NO_CONDITIONING,
                    audio_stream: int = 0) -> list[str]:
    """One decode feeding every rung: split + scale, one HLS muxer with var_stream_map.

    Keyframes are forced every ``segment_seconds`` on every rung (and scene-cut
    keyframes disabled) so segment boundaries line up across renditions.
    Autorotation is left on, so a rotated phone video is scaled in its displayed
    orientation. ``fps`` resamples variable-frame-rate sources to constant rate.
    Each rung is encoded with its own codec's encoder (VIDEO_ENCODERS);
    ``playlist_type`` is hls_config's ("VOD" or "EVENT"). ``conditioning``
    deinterlaces and tone-maps before the split; rung sizes are square-pixel
    (the displayed aspect), so anamorphic sources come out right with setsar=1.
    Audio is the source's ``audio_stream``-th track, as stereo AAC whatever it was.
    """
    n = len(rungs)
    args = [FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", "-threads", str(threads), "-i", str(src),
            "-filter_complex", _ladder_graph(rungs, fps, conditioning)]
    for i in range(n):
        args += ["-map", f"[v{i}]"]
    if has_audio:
        for _ in range(n):
            args += ["-map", f"0:a:{audio_stream}"]
    args += _ladder_video_codec_args(rungs, fps=fps, segment_seconds=segment_seconds, preset=preset,
                                     conditioning=conditioning)
    if has_audio:
        args += ["-c:a", "aac", "-b:a", str(audio_bitrate), "-ac", "2", "-ar", "48000"]
    vsm = " ".join(f"v:{i},a:{i},name:{r.name}" if has_audio else f"v:{i},name:{r.name}" for i, r in enumerate(rungs))
    return args + _hls_output_args(Path(out_dir), vsm, segment_seconds=segment_seconds, playlist_type=playlist_type,
                                   key_info_file=key_info_file)


# ---------------------------------------------------------------- chunked transcoding

# Every stream of a chunked transcode is written with its media time plus this offset, set
# explicitly: with a zero offset ffmpeg shifts a stream whose first DTS is negative (x264's
# B-frame delay, AAC priming) by that amount, differently per chunk and per stream, which
# would leave chunk 0 and the audio a few frames off the other chunks. With a positive base
# no stream is shifted, so chunk k's frames sit at exactly start_k + base, as the audio does.
CHUNK_TS_BASE = 1.0


def hls_chunk_args(src: PathLike, out_dir: PathLike, rungs: Sequence[RungSpec], *, fps: float, start: float,
                   end: float, first_segment: int, segment_seconds: int = 10,
                   key_info_file: PathLike | None = None, preset: str = DEFAULT_PRESET, threads: int = 0,
                   conditioning: Conditioning = NO_CONDITIONING) -> list[str]:
    """One chunk's whole ladder, video only, in one decode of ``[start, end)`` of ``src``.

    ``src`` may be a presigned URL (ffmpeg seeks with range requests). The input is
    seeked accurately (decoded from the keyframe before ``start``, frames before it
    dropped), so the chunk's first frame is the source's first at or after ``start``;
    timestamps are written at ``start + CHUNK_TS_BASE`` on (``-output_ts_offset``) and
    segments numbered from ``first_segment``, so the chunks' segments joined in order
    are one continuous stream. The GOP is fixed at one segment with keyframes forced
    on the segment grid (chunk boundaries are on it). The decode logs with
    DECODE_LOG_OPTIONS for decode_check.chunk_failure (times relative to ``start``).
    """
    n = len(rungs)
    window = (["-ss", f"{start:.3f}"] if start > 0 else []) + ["-t", f"{end - start:.3f}"]
    args = [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-y", *DECODE_LOG_OPTIONS, "-threads", str(threads),
            *window, "-i", str(src), "-filter_complex", _ladder_graph(rungs, fps, conditioning)]
    for i in range(n):
        args += ["-map", f"[v{i}]"]
    args += _ladder_video_codec_args(rungs, fps=fps, segment_seconds=segment_seconds, preset=preset,
                                     conditioning=conditioning)
    args += ["-an", "-output_ts_offset", f"{start + CHUNK_TS_BASE:.3f}"]
    vsm = " ".join(f"v:{i},name:{r.name}" for i, r in enumerate(rungs))
    return args + _hls_output_args(Path(out_dir), vsm, segment_seconds=segment_seconds, playlist_type="VOD",
                                   key_info_file=key_info_file, start_number=first_segment)


def hls_audio_args(src: PathLike, out_dir: PathLike, *, name: str = "audio", segment_seconds: int = 10,
                   key_info_file: PathLike | None = None, audio_bitrate: int = DEFAULT_AUDIO_BITRATE,
                   audio_stream: int = 0) -> list[str]:
    """The whole file's audio encoded once (stereo AAC, 48 kHz) as its own HLS rendition under
    ``out_dir/<name>/``, on the chunks' timeline (CHUNK_TS_BASE): one encoder for the whole file means
    no priming, gap or click at a chunk boundary."""
    args = [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-y", "-v", "error", "-i", str(src),
            "-map", f"0:a:{audio_stream}", "-vn", "-c:a", "aac", "-b:a", str(audio_bitrate), "-ac", "2",
            "-ar", "48000", "-output_ts_offset", f"{CHUNK_TS_BASE:.3f}"]
    return args + _hls_output_args(Path(out_dir), f"a:0,name:{name}", segment_seconds=segment_seconds,
                                   playlist_type="VOD", key_info_file=key_info_file)


def seed_per_profile_commands(src: PathLike, profiles: Sequence[tuple[str, int, int, int]], out_dir: PathLike, *,
                              audio_bitrate: int = DEFAULT_AUDIO_BITRATE, preset: str | None = None,
                              has_audio: bool = True) -> list[list[str]]:
    """The seed's ``_transcode_profile``: one full ffmpeg (one decode) per profile.

    ``profiles`` are (name, width, height, bitrate). The seed passes no preset
    (x264's default, medium); ``preset`` lets a benchmark use the same preset as
    framelog's ladder. The seed runs these concurrently (asyncio.gather).
    """
    cmds = []
    for name, w, h, bitrate in profiles:
        cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-i", str(src), "-c:v", "h264",
               "-b:v", f"{bitrate // 1000}k", "-s", f"{w}x{h}"]
        if preset:
            cmd += ["-preset", preset]
        cmd += ["-c:a", "aac", "-b:a", f"{audio_bitrate // 1000}k"] if has_audio else ["-an"]
        cmd += ["-y", str(Path(out_dir) / f"{name}.mp4")]
        cmds.append(cmd)
    return cmds


# ---------------------------------------------------------------- thumbnails

def poster_args(src: PathLike, out: PathLike, at_seconds: float, max_width: int = 1280,
                conditioning: Conditioning = NO_CONDITIONING) -> list[str]:
    """One JPEG frame at ``at_seconds`` (input seeking, then the first decoded frame), square pixels
    at the displayed aspect (an anamorphic frame is widened), deinterlaced and tone-mapped if need be."""
    width = f"trunc(min({max_width},iw*sar)/2)*2"
    graph = _chain(*conditioning.filters(), f"scale=w='{width}':h='trunc(ow/dar/2)*2'", "setsar=1")
    return [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-ss", f"{at_seconds:.3f}", "-i", str(src),
            "-filter_complex", f"[0:v:0]{graph}[p]", "-map", "[p]", "-frames:v", "1", "-q:v", "3", "-update", "1",
            "-y", str(out)]


def thumbnails_sprite_args(src: PathLike, thumbs_pattern: PathLike, sprite: PathLike, *, interval: float,
                           width: int, height: int, columns: int, rows: int,
                           conditioning: Conditioning = NO_CONDITIONING) -> list[str]:
    """Thumbnails every ``interval`` s and the sprite sheet of the same frames, one decode."""
    pick = f"select='isnan(prev_selected_t)+gte(t-prev_selected_t\\,{interval:g})'"
    graph = (f"[0:v:0]{_chain(pick, *conditioning.filters())},scale={width}:{height}:flags=bicubic,setsar=1,"
             "split[t][s];"
             f"[s]tile={columns}x{rows}[sp]")
    return [FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", "-i", str(src), "-filter_complex", graph,
            "-map", "[t]", "-q:v", "4", "-fps_mode", "passthrough", str(thumbs_pattern),
            "-map", "[sp]", "-q:v", "4", "-frames:v", "1", "-update", "1", str(sprite)]


# ---------------------------------------------------------------- analysis

def analysis_args(src: PathLike, *, has_video: bool, has_audio: bool, scene_threshold: float,
                  black_min_duration: float, black_pixel_threshold: float, silence_noise_db: float,
                  silence_min_duration: float, analysis_width: int = 320) -> list[str]:
    """Scene changes, black frames, silence and loudness in one decode pass.

    Video is shrunk first (scene scores and black detection need no detail);
    results are read from the filters' log lines on stderr (``-v info``).
    Video and audio go to two null outputs: in one output the muxer waits for a packet of every stream
    before it writes, and the video side passes only scene changes, so a long video without one buffered
    all of its audio until ffmpeg gave up ("Too many packets buffered", a 2-hour upload failed here).
    """
    parts, outputs = [], []
    if has_video:
        parts.append(f"[0:v:0]scale={analysis_width}:-2,blackdetect=d={black_min_duration:g}:pix_th={black_pixel_threshold:g},"
                     f"select='gt(scene,{scene_threshold:g})',metadata=print:key=lavfi.scene_score,showinfo[vout]")
        outputs += ["-map", "[vout]", "-f", "null", "-"]
    if has_audio:
        parts.append(f"[0:a:0]silencedetect=n={silence_noise_db:g}dB:d={silence_min_duration:g},"
                     f"ebur128=peak=true:framelog=verbose[aout]")
        outputs += ["-map", "[aout]", "-f", "null", "-"]
    return [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-v", "info", "-i", str(src),
            "-filter_complex", ";".join(parts), *outputs]


# ---------------------------------------------------------------- captions

def speech_pcm_args(src: PathLike, out: PathLike, *, sample_rate: int) -> list[str]:
    """The first audio track as mono 16-bit little-endian PCM at ``sample_rate`` (what
    speech recognisers read), raw, without a header."""
    return [FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", "-i", str(src), "-map", "0:a:0", "-vn",
            "-ac", "1", "-ar", str(sample_rate), "-c:a", "pcm_s16le", "-f", "s16le", str(out)]


# ---------------------------------------------------------------- optimization

def faststart_args(src: PathLike, out: PathLike, *, video_codec: str | None = "h264",
                   audio_codec: str | None = "aac", audio_stream: int = 0, preset: str = DEFAULT_PRESET,
                   audio_bitrate: int = DEFAULT_AUDIO_BITRATE,
                   conditioning: Conditioning = NO_CONDITIONING) -> list[str]:
    """The progressive MP4 with the moov atom in front: the picture and one audio track.

    A stream an MP4 holds and browsers play (MP4_VIDEO_CODECS, MP4_AUDIO_CODECS)
    is copied; any other is re-encoded: audio (PCM, ALAC, Opus, AC-3, FLAC ...)
    to stereo AAC, video (ProRes, DNxHD, MPEG-2 ...) to H.264 with the source's
    conditioning. A copied HDR or interlaced H.264 stays what it was. Data and
    timecode tracks of editors' MOVs are left out (no -map 0).
    """
    args = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-i", str(src), "-map", "0:v:0"]
    if audio_codec:
        args += ["-map", f"0:a:{audio_stream}"]
    if video_codec in MP4_VIDEO_CODECS:
        args += ["-c:v", "copy"]
        if video_codec == "hevc":
            args += ["-tag:v", "hvc1"]          # what Apple players want in MP4
    else:
        filters = _chain(*conditioning.filters(), "format=yuv420p")
        args += ["-vf", filters, "-c:v", "libx264", "-preset", preset, "-crf", "20", *conditioning.output_tags()]
    if audio_codec in MP4_AUDIO_CODECS:
        args += ["-c:a", "copy"]
    elif audio_codec:
        args += ["-c:a", "aac", "-b:a", str(audio_bitrate), "-ac", "2"]
    return args + ["-movflags", "+faststart", "-f", "mp4", "-y", str(out)]


def quality_compare_args(reference: PathLike, distorted: PathLike, *, ref_width: int, ref_height: int,
                         start: float, sample_seconds: float, fps: float,
                         distorted_input_options: Sequence[str] = (),
                         conditioning: Conditioning = NO_CONDITIONING) -> list[str]:
    """SSIM and PSNR of ``distorted`` scaled back to the reference's displayed size, on a sample window.

    The reference gets the ladder's conditioning (deinterlaced, tone-mapped, square pixels) so the
    rungs are compared with what they were made from."""
    fr = _fps_expr(fps)
    ref = _chain(*conditioning.filters(), f"fps={fr}", "setpts=PTS-STARTPTS",
                 f"scale={ref_width}:{ref_height}:flags=bicubic", "setsar=1", "format=yuv420p")
    graph = (f"[0:v:0]{ref},split[r1][r2];"
             f"[1:v:0]fps={fr},setpts=PTS-STARTPTS,scale={ref_width}:{ref_height}:flags=bicubic,setsar=1,format=yuv420p,split[d1][d2];"
             f"[d1][r1]ssim[o1];[d2][r2]psnr[o2]")
    # No "-ss 0": on an HLS input whose timestamps start at 1.4 s it misaligns the frames.
    window = (["-ss", f"{start:.3f}"] if start > 0 else []) + ["-t", f"{sample_seconds:.3f}"]
    return [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-v", "info", *window, "-i", str(reference),
            *distorted_input_options, *window, "-i", str(distorted),
            "-filter_complex", graph, "-map", "[o1]", "-f", "null", "-", "-map", "[o2]", "-f", "null", "-"]


def hls_input_options(local: bool = True) -> list[str]:
    """Input options to read a framelog HLS playlist whose key URI is a local file."""
    return ["-allowed_extensions", "ALL", "-protocol_whitelist", "file,crypto,data"]


def decode_hls_args(playlist: PathLike) -> list[str]:
    return [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", *hls_input_options(), "-i", str(playlist),
            "-f", "null", "-"]


def probe_hls_args(playlist: PathLike) -> list[str]:
    return ffprobe_args(playlist, extra=hls_input_options())


__all__ = [
    "FFMPEG", "FFPROBE", "DEFAULT_PRESET", "DEFAULT_AUDIO_BITRATE", "FfmpegError", "RunResult", "RungSpec",
    "ffprobe_json", "ffprobe_args", "run_json", "run_ffmpeg", "DECODE_LOG_OPTIONS", "decode_window_args",
    "count_frames_args", "Conditioning", "NO_CONDITIONING", "DEINTERLACE", "BT709_TAGS", "MP4_VIDEO_CODECS",
    "MP4_AUDIO_CODECS",
    "hls_ladder_args", "hls_chunk_args", "hls_audio_args", "CHUNK_TS_BASE",
    "seed_per_profile_commands", "poster_args", "thumbnails_sprite_args", "analysis_args",
    "speech_pcm_args",
    "faststart_args", "quality_compare_args", "hls_input_options", "decode_hls_args", "probe_hls_args",
]


def sample_clip_args(out: PathLike, *, width: int = 1280, height: int = 720, duration: float = 24,
                     fps: int = 25) -> list[str]:
    """A synthetic clip for demos and benchmarks: a test pattern that cuts hard to colour
    bars half-way (a scene change to find), over a tone with a silent second stretch."""
    half = duration / 2
    return [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={half}",
            "-f", "lavfi", "-i", f"smptehdbars=size={width}x{height}:rate={fps}:duration={half}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={half}",
            "-f", "lavfi", "-i", f"anullsrc=channel_layout=mono:sample_rate=48000:d={half}",
            "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v];[2:a][3:a]concat=n=2:v=0:a=1[a]",
            "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(out)]
