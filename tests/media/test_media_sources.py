"""Sources from real cameras and editors (issue 13 point 6): each made with lavfi (clips.py), packaged by
the real ladder, the output decoded, and the property checked on the output."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from framelog.pipeline.jobs.base import PermanentJobError, public_reason
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import package_hls, write_local_playlist
from framelog.processors.media.optimization import faststart
from framelog.processors.media.probe import probe
from tests.media.support import PRESET


def _package(clip, cfg, tmp_path, name):
    return package_hls(clip(name), tmp_path / "hls", "vid-src", cfg.hls, preset=PRESET)


def _local(result, rendition, tmp_path) -> Path:
    key = tmp_path / "k.key"
    key.write_bytes(result.key)
    return write_local_playlist(result.out_dir / rendition.playlist, key, tmp_path / f"{rendition.name}.m3u8")


def _streams(playlist: Path) -> dict[str, dict]:
    """The first video and audio stream of a decoded rendition (the decode raises on any error)."""
    fc.run_ffmpeg(fc.decode_hls_args(playlist))
    data = fc.run_json(fc.probe_hls_args(playlist))
    out: dict[str, dict] = {}
    for s in data["streams"]:
        out.setdefault(s["codec_type"], s)
    return out


def _filter_log(src: Path, graph: str, *, hls: bool = True) -> str:
    """Run a measuring filter (idet, signalstats) over ``src`` and return its log."""
    opts = fc.hls_input_options() if hls else []
    return subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-nostats", *opts, "-i", str(src), "-an",
                           "-vf", graph, "-f", "null", "-"], capture_output=True, text=True, check=True).stderr


def _idet(src: Path, *, hls: bool = True) -> dict[str, int]:
    line = [x for x in _filter_log(src, "idet", hls=hls).splitlines() if "Multi frame detection" in x][-1]
    return {k: int(v) for k, v in re.findall(r"(TFF|BFF|Progressive|Undetermined):\s*(\d+)", line)}


def _mean_luma(src: Path, graph: str = "", *, hls: bool = True) -> float:
    log = _filter_log(src, f"{graph + ',' if graph else ''}signalstats,metadata=print:key=lavfi.signalstats.YAVG",
                      hls=hls)
    values = [float(v) for v in re.findall(r"YAVG=([0-9.]+)", log)]
    return sum(values) / len(values)


def test_anamorphic_source_gives_square_pixel_rungs_of_its_display_aspect(clip, cfg, tmp_path):
    info = probe(clip("anamorphic.mp4"))
    assert (info.coded_width, info.coded_height, info.sar) == (1440, 1080, "4:3")
    assert (info.width, info.height) == (1920, 1080)
    result = _package(clip, cfg, tmp_path, "anamorphic.mp4")
    assert [r.name for r in result.renditions] == ["1080p", "720p", "480p", "360p"]
    for r in result.renditions:
        v = _streams(_local(result, r, tmp_path))["video"]
        assert v.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1", "N/A")
        assert v["width"] / v["height"] == pytest.approx(16 / 9, rel=0.01), (r.name, v["width"], v["height"])


def test_interlaced_source_is_deinterlaced(clip, cfg, tmp_path):
    src = clip("interlaced.mp4")
    info = probe(src)
    assert info.interlaced and info.field_order == "tt"
    before = _idet(src, hls=False)
    assert before["TFF"] > before["Progressive"], before          # the clip really is interlaced
    result = _package(clip, cfg, tmp_path, "interlaced.mp4")
    for r in result.renditions:
        local = _local(result, r, tmp_path)
        v = _streams(local)["video"]
        assert v.get("field_order", "progressive") in ("progressive", "unknown")
        after = _idet(local)
        assert after["TFF"] == 0 and after["BFF"] == 0 and after["Progressive"] > 0, (r.name, after)


@pytest.mark.parametrize("name, transfer", [("hdr_pq.mp4", "smpte2084"), ("hdr_hlg.mp4", "arib-std-b67")])
def test_hdr_source_is_tone_mapped_to_8bit_bt709(clip, cfg, tmp_path, name, transfer):
    src = clip(name)
    info = probe(src)
    assert info.color_transfer == transfer and info.pix_fmt == "yuv420p10le" and info.hdr
    result = _package(clip, cfg, tmp_path, name)
    r = result.renditions[0]
    local = _local(result, r, tmp_path)
    v = _streams(local)["video"]
    assert v["pix_fmt"] == "yuv420p"
    assert (v.get("color_transfer"), v.get("color_primaries"), v.get("color_space")) == ("bt709", "bt709", "bt709")
    # tone mapped, not just cut to 8 bits: the picture is darker than the code values read as SDR. testsrc2's
    # mean code (~0.49) is ~90 nits in PQ: linear 0.9 at npl 100, hable 0.22 of its peak, BT.709 ~117 of 255
    # against 125 read naively (HLG: ~113). A transfer converted without a tone map would come out far brighter.
    # (Measured 125 -> 118 (PQ) and 125 -> 113 (HLG) with Debian's ffmpeg 5.1 and zimg 3.0.4 on an AMD EPYC;
    # an earlier machine gave more than 20 darker.)
    naive = _mean_luma(src, "format=yuv420p", hls=False)
    mapped = _mean_luma(local)
    assert naive - mapped > 4, (naive, mapped)


@pytest.mark.parametrize("name, codec, channels", [
    ("pcm.mov", "pcm_s16le", 2), ("alac.mov", "alac", 2), ("opus.mkv", "opus", 2), ("ac3.mkv", "ac3", 2),
    ("surround.mp4", "aac", 6), ("multitrack.mkv", "aac", 2),
])
def test_audio_of_any_codec_and_layout_becomes_stereo_aac(clip, cfg, tmp_path, name, codec, channels):
    info = probe(clip(name))
    assert (info.audio_codec, info.audio_channels) == (codec, channels)
    if name == "multitrack.mkv":
        assert (info.audio_streams, info.audio_index) == (2, 1)   # the default track, not the first
    result = _package(clip, cfg, tmp_path, name)
    a = _streams(_local(result, result.renditions[0], tmp_path))["audio"]
    assert (a["codec_name"], a["channels"]) == ("aac", 2)


def test_a_plain_copy_remux_of_pcm_in_mov_fails_as_it_did(clip, tmp_path):
    """The bug (issue 13): optimization remuxed with ``-map 0 -c copy`` to MP4, which holds no PCM."""
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", str(clip("pcm.mov")),
                           "-map", "0", "-c", "copy", "-movflags", "+faststart", "-y", str(tmp_path / "x.mp4")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Could not find tag for codec pcm_s16le" in proc.stderr


@pytest.mark.parametrize("name", ["pcm.mov", "alac.mov", "opus.mkv", "ac3.mkv", "surround.mp4", "multitrack.mkv",
                                  "anamorphic.mp4", "interlaced.mp4", "hdr_pq.mp4", "hdr_hlg.mp4",
                                  "portrait.mp4", "odd.mp4", "vfr.mp4", "noaudio.mp4"])
def test_the_optimization_remux_works_for_every_accepted_source(clip, tmp_path, name):
    src = clip(name)
    info = probe(src)
    out = faststart(src, tmp_path / "fs.mp4", info, preset=PRESET)
    fc.run_ffmpeg([fc.FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-xerror", "-i", str(out),
                   "-f", "null", "-"])
    got = probe(out)
    assert got.duration == pytest.approx(info.duration, abs=0.2)
    assert got.video_codec in fc.MP4_VIDEO_CODECS and (got.width, got.height) == (info.width, info.height)
    if info.has_audio:
        assert got.audio_codec in fc.MP4_AUDIO_CODECS
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")                  # fast start


def test_a_failure_reason_names_the_problem_without_a_path(clip, tmp_path):
    """What the uploader reads: words; the tool's output (paths and all) is the operators' detail."""
    try:
        fc.run_ffmpeg([fc.FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-i", str(clip("pcm.mov")),
                       "-map", "0", "-c", "copy", "-y", str(tmp_path / "x.mp4")])
    except fc.FfmpegError as exc:
        public, detail = public_reason(exc)
    else:
        pytest.fail("the copy remux of PCM into MP4 should fail")
    assert public == "ffmpeg: a stream's codec cannot be stored in the output format (exit 1)"
    assert "/tmp" not in public and "/" not in public and "pcm_s16le" in detail
    public, detail = public_reason(OSError(2, "No such file or directory", str(tmp_path / "source")))
    assert "/tmp" not in public and str(tmp_path) not in public and str(tmp_path) in detail
    public, detail = public_reason(PermanentJobError("corrupt", "undecodable frames at 00:00:30-00:00:40", "[error]"))
    assert (public, detail) == ("undecodable frames at 00:00:30-00:00:40", "[error]")


def test_poster_of_anamorphic_and_hdr_sources(clip, tmp_path):
    """The poster is conditioned like the ladder: square pixels at the displayed aspect, SDR."""
    from framelog.processors.media.thumbnails import poster

    wide = probe(poster(clip("anamorphic.mp4"), tmp_path / "a.jpg"))
    assert (wide.width, wide.height) == (1280, 720)
    sdr = poster(clip("hdr_pq.mp4"), tmp_path / "h.jpg")
    assert _mean_luma(sdr, hls=False) < _mean_luma(clip("hdr_pq.mp4"), "format=yuv420p", hls=False) - 4   # as above
