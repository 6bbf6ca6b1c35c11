"""Optimization stage: faststart MP4, measured rung bitrates and quality, per-title ladder pruning.

Quality: each rendition is decoded, scaled back to the source's displayed size
(bicubic) and compared with the source by SSIM and PSNR (ffmpeg's ``ssim`` and
``psnr`` filters, one run per rung computing both). Long videos are compared on
a window of ``sample_seconds`` from the middle of the video.

Pruning rule (per title): walk the rungs from the lowest up, comparing each
with the nearest *kept* rung below it. A rung is dropped when it costs at least
as many bytes as that rung but gains less than ``min_ssim_gain_db`` in SSIM
(expressed in dB, ``-10*log10(1-SSIM)``) **and** less than ``min_psnr_gain_db``
in PSNR. The lowest rung is always kept. Example: a static slide deck whose
1080p rung scores 0.2 dB above 720p while being twice the bytes loses its 1080p
rung; a detailed sports clip keeps it. Two perfect scores (a flat picture:
SSIM 1, PSNR inf) are no gain, and at equal bytes the bigger picture only costs
the player decoding work, so it goes too.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import PLAYLIST_NAME, HlsResult, write_local_playlist, write_master
from framelog.processors.media.probe import MediaInfo, probe

DEFAULT_SAMPLE_SECONDS = 20.0
DEFAULT_MIN_SSIM_GAIN_DB = 0.5
DEFAULT_MIN_PSNR_GAIN_DB = 0.5


@dataclass(frozen=True)
class QualityScore:
    ssim: float
    ssim_db: float
    psnr: float     # average PSNR over Y/U/V (dB); inf for identical pictures


@dataclass(frozen=True)
class RungQuality:
    name: str
    width: int
    height: int
    bytes: int
    measured_bitrate: int   # AVERAGE-BANDWIDTH: segment bytes * 8 / duration
    target_bitrate: int
    ssim: float
    ssim_db: float
    psnr: float


@dataclass(frozen=True)
class PruneDecision:
    kept: tuple[str, ...]
    dropped: tuple[str, ...]
    reasons: dict[str, str]
    min_ssim_gain_db: float
    min_psnr_gain_db: float


@dataclass(frozen=True)
class OptimizationResult:
    faststart: Path | None
    rungs: tuple[RungQuality, ...]
    pruning: PruneDecision
    sample_start: float
    sample_seconds: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["faststart"] = str(self.faststart) if self.faststart else None
        return d


def ssim_to_db(ssim: float) -> float:
    return math.inf if ssim >= 1.0 else -10.0 * math.log10(1.0 - ssim)


def faststart(src: str | os.PathLike[str], out: str | os.PathLike[str], info: MediaInfo | None = None, *,
              preset: str = fc.DEFAULT_PRESET, audio_bitrate: int = fc.DEFAULT_AUDIO_BITRATE) -> Path:
    """The progressive MP4, moov atom first: a remux of every stream an MP4 holds and browsers play,
    the others re-encoded (PCM, ALAC, Opus, AC-3 audio -> AAC; ProRes & co -> H.264), so every
    source validation accepted gets one (ffmpeg_commands.faststart_args)."""
    out = Path(out)
    info = info or probe(src)
    fc.run_ffmpeg(fc.faststart_args(src, out, video_codec=info.video_codec,
                                    audio_codec=info.audio_codec if info.has_audio else None,
                                    audio_stream=info.audio_index, preset=preset, audio_bitrate=audio_bitrate,
                                    conditioning=info.conditioning()))
    return out


_SSIM = re.compile(r"SSIM .*All:([0-9.]+)")
_PSNR = re.compile(r"PSNR .*average:([0-9.]+|inf)")


def sample_window(duration: float, sample_seconds: float) -> tuple[float, float]:
    """(start, length): the whole video if short, else a window from the middle."""
    if duration <= sample_seconds:
        return 0.0, max(duration, 0.04)
    return round((duration - sample_seconds) / 2, 3), sample_seconds


def measure_quality(reference: str | os.PathLike[str], distorted: str | os.PathLike[str], *, ref_width: int,
                    ref_height: int, fps: float, start: float = 0.0, sample_seconds: float = DEFAULT_SAMPLE_SECONDS,
                    distorted_is_hls: bool = False, conditioning: fc.Conditioning = fc.NO_CONDITIONING) -> QualityScore:
    args = fc.quality_compare_args(reference, distorted, ref_width=ref_width, ref_height=ref_height, start=start,
                                   sample_seconds=sample_seconds, fps=fps,
                                   distorted_input_options=fc.hls_input_options() if distorted_is_hls else (),
                                   conditioning=conditioning)
    err = fc.run_ffmpeg(args).stderr
    ms, mp = _SSIM.search(err), _PSNR.search(err)
    if not ms or not mp:
        raise fc.FfmpegError(args, 0, "no SSIM/PSNR summary in ffmpeg output:\n" + err[-1000:])
    ssim = float(ms.group(1))
    return QualityScore(ssim, ssim_to_db(ssim), float(mp.group(1)))


def _gain(upper: float, lower: float) -> float:
    """How much better ``upper`` scores; two perfect (infinite) scores are a gain of 0, not NaN
    (flat or lossless content, where a bigger rung adds nothing)."""
    return 0.0 if upper == lower else upper - lower


def prune_ladder(rungs: Sequence[RungQuality], *, min_ssim_gain_db: float = DEFAULT_MIN_SSIM_GAIN_DB,
                 min_psnr_gain_db: float = DEFAULT_MIN_PSNR_GAIN_DB) -> PruneDecision:
    """Apply the module's pruning rule; returns kept names highest first."""
    ordered = sorted(rungs, key=lambda r: (r.width * r.height, r.bytes))
    if not ordered:
        return PruneDecision((), (), {}, min_ssim_gain_db, min_psnr_gain_db)
    kept = [ordered[0]]
    dropped, reasons = [], {}
    for r in ordered[1:]:
        below = kept[-1]
        ssim_gain = _gain(r.ssim_db, below.ssim_db)
        psnr_gain = _gain(r.psnr, below.psnr)
        if r.bytes >= below.bytes and ssim_gain < min_ssim_gain_db and psnr_gain < min_psnr_gain_db:
            dropped.append(r.name)
            reasons[r.name] = (f"vs {below.name}: SSIM +{ssim_gain:.2f} dB (< {min_ssim_gain_db}), "
                               f"PSNR +{psnr_gain:.2f} dB (< {min_psnr_gain_db}) for "
                               f"{r.bytes / max(below.bytes, 1):.2f}x the bytes")
        else:
            kept.append(r)
    return PruneDecision(tuple(r.name for r in reversed(kept)), tuple(dropped), reasons, min_ssim_gain_db,
                         min_psnr_gain_db)


def evaluate_ladder(src: str | os.PathLike[str], hls: HlsResult, *, info: MediaInfo | None = None,
                    sample_seconds: float = DEFAULT_SAMPLE_SECONDS,
                    progress: fc.Progress | None = None) -> tuple[list[RungQuality], float, float]:
    """SSIM/PSNR and measured bitrate of every rendition of ``hls`` against ``src``."""
    info = info or probe(src)
    start, length = sample_window(info.duration, sample_seconds)
    private = Path(tempfile.mkdtemp(prefix="framelog-opt-"))
    out = []
    try:
        key_path = None
        if hls.key:
            key_path = private / "key"
            key_path.write_bytes(hls.key)
        for i, r in enumerate(hls.renditions):
            local = write_local_playlist(hls.out_dir / r.name / PLAYLIST_NAME, key_path, private / f"{r.name}.m3u8")
            q = measure_quality(src, local, ref_width=info.width, ref_height=info.height, fps=r.frame_rate,
                                start=start, sample_seconds=length, distorted_is_hls=True,
                                conditioning=info.conditioning())
            out.append(RungQuality(r.name, r.width, r.height, r.size, r.average_bandwidth, r.target_bitrate,
                                   q.ssim, q.ssim_db, q.psnr))
            if progress:
                progress((i + 1) / len(hls.renditions))
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return out, start, length


def apply_pruning(hls: HlsResult, decision: PruneDecision, *, delete_files: bool = True) -> Path:
    """Rewrite master.m3u8 without the dropped renditions (and delete their directories)."""
    kept = [r for r in hls.renditions if r.name in decision.kept]
    master = write_master(hls.out_dir, kept, audio=hls.audio)
    if delete_files:
        for name in decision.dropped:
            shutil.rmtree(hls.out_dir / name, ignore_errors=True)
    return master


def optimize(src: str | os.PathLike[str], hls: HlsResult, *, faststart_out: str | os.PathLike[str] | None = None,
             info: MediaInfo | None = None, sample_seconds: float = DEFAULT_SAMPLE_SECONDS,
             min_ssim_gain_db: float = DEFAULT_MIN_SSIM_GAIN_DB, min_psnr_gain_db: float = DEFAULT_MIN_PSNR_GAIN_DB,
             apply: bool = False, progress: fc.Progress | None = None, preset: str = fc.DEFAULT_PRESET,
             audio_bitrate: int = fc.DEFAULT_AUDIO_BITRATE) -> OptimizationResult:
    """The whole stage: optional faststart remux of ``src``, rung quality, pruning decision (applied if ``apply``)."""
    info = info or probe(src)
    fs = faststart(src, faststart_out, info, preset=preset, audio_bitrate=audio_bitrate) if faststart_out else None
    rungs, start, length = evaluate_ladder(src, hls, info=info, sample_seconds=sample_seconds, progress=progress)
    decision = prune_ladder(rungs, min_ssim_gain_db=min_ssim_gain_db, min_psnr_gain_db=min_psnr_gain_db)
    if apply and decision.dropped:
        apply_pruning(hls, decision)
    return OptimizationResult(fs, tuple(rungs), decision, start, length)
