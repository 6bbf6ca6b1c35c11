"""HLS ladder: one decode, aligned segments, AES-128, measured master playlist."""
import re
from pathlib import Path

import pytest

from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import package_hls, parse_media_playlist, write_local_playlist
from framelog.processors.media.probe import probe
from tests.media.support import PRESET

SEGMENT_TOLERANCE = 0.25


def _decode(playlist: Path) -> dict:
    fc.run_ffmpeg(fc.decode_hls_args(playlist))        # raises on any decode error
    return fc.run_json(fc.probe_hls_args(playlist))


def test_layout_and_renditions(landscape_hls):
    result, _ = landscape_hls
    out = result.out_dir
    assert [r.name for r in result.renditions] == ["720p", "480p", "360p"]
    assert (out / "master.m3u8").is_file()
    for r in result.renditions:
        assert (out / r.name / "playlist.m3u8").is_file()
        assert (out / r.name / "segment_00000.ts").is_file()
        assert r.width % 2 == 0 and r.height % 2 == 0
    assert [(r.width, r.height) for r in result.renditions] == [(1280, 720), (852, 480), (640, 360)]
    assert not list(out.rglob("*.key")) and not list(out.rglob("*keyinfo*")), "the key must stay out of the CDN dir"


def test_progress_is_reported(landscape_hls):
    _, seen = landscape_hls
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] == 1.0


def test_segments_are_at_most_10s_and_aligned_across_rungs(landscape_hls):
    result, _ = landscape_hls
    lists = []
    for r in result.renditions:
        durs = [d for _, d in parse_media_playlist(result.out_dir / r.name / "playlist.m3u8")]
        assert all(d <= result.segment_duration + SEGMENT_TOLERANCE for d in durs), durs
        assert sum(durs) == pytest.approx(12.0, abs=0.2)
        lists.append(durs)
    assert all(len(x) == len(lists[0]) for x in lists)
    for col in zip(*lists):
        assert max(col) - min(col) < 0.05, lists


def test_playlists_carry_the_aes_key_line(landscape_hls, cfg):
    result, _ = landscape_hls
    assert result.encrypted and len(result.key) == 16 and len(result.iv) == 16
    assert result.key_uri == f"{cfg.hls.key_uri_base}/vid-landscape"
    assert "://" not in result.key_uri             # no host frozen into a stored playlist (issue 14 pt 4)
    for r in result.renditions:
        text = (result.out_dir / r.name / "playlist.m3u8").read_text()
        assert f'#EXT-X-KEY:METHOD=AES-128,URI="{result.key_uri}",IV={result.iv_hex}' in text
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text


def test_encrypted_segment_is_not_a_transport_stream(landscape_hls):
    result, _ = landscape_hls
    data = (result.out_dir / "360p" / "segment_00000.ts").read_bytes()
    assert len(data) % 16 == 0
    syncs = sum(data[i] == 0x47 for i in range(0, min(len(data), 188 * 200), 188))
    assert syncs < 20, "segment looks like clear MPEG-TS"


def test_decodes_end_to_end_with_the_key(landscape_hls, key_file, tmp_path):
    result, _ = landscape_hls
    key = key_file(result.key)
    for r in result.renditions:
        local = write_local_playlist(result.out_dir / r.name / "playlist.m3u8", key, tmp_path / f"{r.name}.m3u8")
        data = _decode(local)
        v = next(s for s in data["streams"] if s["codec_type"] == "video")
        assert (v["width"], v["height"]) == (r.width, r.height)
        assert any(s["codec_type"] == "audio" and s["codec_name"] == "aac" for s in data["streams"])
        assert float(data["format"]["duration"]) == pytest.approx(12.0, abs=0.3)


def test_wrong_key_does_not_decode(landscape_hls, key_file, tmp_path):
    result, _ = landscape_hls
    key = key_file(bytes(16))
    local = write_local_playlist(result.out_dir / "360p" / "playlist.m3u8", key, tmp_path / "bad.m3u8")
    with pytest.raises(fc.FfmpegError):
        fc.run_ffmpeg([fc.FFMPEG, "-v", "error", "-xerror", *fc.hls_input_options(), "-i", str(local),
                       "-f", "null", "-"])


def test_master_playlist_is_measured(landscape_hls):
    result, _ = landscape_hls
    text = result.master_playlist.read_text()
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:6\n")
    infs = re.findall(r"#EXT-X-STREAM-INF:(.*)\n(.*)", text)
    assert [uri for _, uri in infs] == ["720p/playlist.m3u8", "480p/playlist.m3u8", "360p/playlist.m3u8"]
    for (attrs, _), r in zip(infs, result.renditions):
        bw = int(re.search(r"(?:^|,)BANDWIDTH=(\d+)", attrs).group(1))
        avg = int(re.search(r"AVERAGE-BANDWIDTH=(\d+)", attrs).group(1))
        assert f"RESOLUTION={r.width}x{r.height}" in attrs
        assert "FRAME-RATE=25.000" in attrs
        assert re.search(r'CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"', attrs)
        assert bw >= avg > 0
        size = sum(p.stat().st_size for p in (result.out_dir / r.name).glob("*.ts"))
        assert avg == pytest.approx(size * 8 / r.duration, rel=0.01)
    bws = [r.bandwidth for r in result.renditions]
    assert bws == sorted(bws, reverse=True)


def test_no_audio_source(clip, cfg, tmp_path, key_file):
    result = package_hls(clip("noaudio.mp4"), tmp_path / "out", "vid-na", cfg.hls, preset=PRESET)
    assert [r.name for r in result.renditions] == ["360p"]  # 320x180 source: lowest rung at source size
    r = result.renditions[0]
    assert (r.width, r.height) == (320, 180)
    assert "mp4a" not in r.codecs and r.codecs.startswith("avc1.")
    assert "mp4a" not in result.master_playlist.read_text()
    data = _decode(write_local_playlist(result.out_dir / "360p" / "playlist.m3u8", key_file(result.key),
                                       tmp_path / "l.m3u8"))
    assert [s["codec_type"] for s in data["streams"]] == ["video"]


def test_portrait_is_encoded_upright(clip, cfg, tmp_path):
    result = package_hls(clip("portrait.mp4"), tmp_path / "out", "vid-p", cfg.hls, preset=PRESET, encrypt=False)
    r = result.renditions[0]
    assert (r.width, r.height) == (180, 320)
    info = probe(result.out_dir / r.name / "segment_00000.ts")
    assert (info.width, info.height, info.rotation) == (180, 320, 0)


def test_odd_dimensions_and_vfr(clip, cfg, tmp_path):
    odd = package_hls(clip("odd.mp4"), tmp_path / "odd", "vid-o", cfg.hls, preset=PRESET, encrypt=False)
    assert [(r.name, r.width, r.height) for r in odd.renditions] == [("360p", 634, 360)]
    seg = probe(odd.out_dir / "360p" / "segment_00000.ts")
    assert (seg.width, seg.height) == (634, 360) and seg.pix_fmt == "yuv420p"
    vfr = package_hls(clip("vfr.mp4"), tmp_path / "vfr", "vid-v", cfg.hls, preset=PRESET, encrypt=False)
    seg = probe(vfr.out_dir / "360p" / "segment_00000.ts")
    assert not seg.variable_frame_rate


def test_very_short_clip(clip, cfg, tmp_path):
    result = package_hls(clip("short.mp4"), tmp_path / "s", "vid-s", cfg.hls, preset=PRESET)
    segs = result.renditions[0].segments
    assert len(segs) == 1 and segs[0].duration == pytest.approx(1.0, abs=0.1)
    assert result.renditions[0].bandwidth > 0
