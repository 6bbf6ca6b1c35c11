"""Pure parts of the media processors: no ffmpeg is run here."""
from datetime import UTC, datetime
from pathlib import Path

import pytest

from framelog.core.config import load_config
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.analysis import (
    chapters_from_scenes,
    parse_black,
    parse_loudness,
    parse_scene_changes,
    parse_silence,
)
from framelog.processors.media.hls import (
    Rendition,
    Segment,
    avc_codec_string,
    master_playlist_text,
    parse_media_playlist,
    write_key_info,
    write_local_playlist,
)
from framelog.processors.media.ladder import plan_ladder
from framelog.processors.media.optimization import RungQuality, prune_ladder, sample_window, ssim_to_db
from framelog.processors.media.probe import media_info_from_probe, rotation_of
from framelog.processors.media.thumbnails import storyboard_vtt
from framelog.processors.media.validation import determine_quality, source_key


@pytest.mark.parametrize("height, label", [(2160, "1080p"), (1080, "1080p"), (1079, "720p"), (720, "720p"),
                                           (480, "480p"), (479, "360p"), (144, "360p")])
def test_determine_quality_is_the_seeds(height, label):
    assert determine_quality(height) == label


def test_determine_quality_optional_4k():
    assert determine_quality(2160, allow_4k=True) == "4K"
    assert determine_quality(1440, allow_4k=True) == "1080p"


def test_source_key():
    at = datetime(2025, 3, 7, 23, 59, tzinfo=UTC)
    assert source_key("abc123", at, "720p") == "videos/2025/03/720p/abc123.mp4"      # the seed's generateCDNPath


@pytest.mark.parametrize("stream, rot", [
    ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]}, 270),
    ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": 90}]}, 90),
    ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": 180}]}, 180),
    ({"tags": {"rotate": "90"}}, 90),
    ({"tags": {"rotate": "-270"}}, 90),
    ({}, 0),
])
def test_rotation_of(stream, rot):
    assert rotation_of(stream) == rot


def test_media_info_from_probe_rotated():
    data = {"format": {"format_name": "mov,mp4", "duration": "10.0", "size": "1000", "bit_rate": "800"},
            "streams": [{"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
                         "avg_frame_rate": "30000/1001", "r_frame_rate": "30000/1001",
                         "side_data_list": [{"rotation": -90}]},
                        {"codec_type": "audio", "codec_name": "aac", "channels": 2, "sample_rate": "48000"}]}
    info = media_info_from_probe(data, "x.mp4")
    assert (info.width, info.height, info.rotation) == (1080, 1920, 270)
    assert info.fps == pytest.approx(29.97, abs=0.01) and not info.variable_frame_rate
    assert info.has_audio and info.audio_channels == 2 and info.bitrate == 800


def test_avc_codec_strings():
    assert avc_codec_string("High", 31) == "avc1.64001f"
    assert avc_codec_string("High", 40) == "avc1.640028"
    assert avc_codec_string("Main", 30) == "avc1.4d401e"
    assert avc_codec_string("Constrained Baseline", 30) == "avc1.42e01e"


def test_master_playlist_text():
    seg = (Segment("segment_00000.ts", 10.0, 1000),)
    r = Rendition("720p", 1280, 720, 29.97, 2_500_000, 2_800_000, 2_600_000, "avc1.64001f,mp4a.40.2",
                  "720p/playlist.m3u8", 10.0, 1000, seg)
    assert master_playlist_text([r]) == (
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=2800000,AVERAGE-BANDWIDTH=2600000,RESOLUTION=1280x720,FRAME-RATE=29.970,'
        'CODECS="avc1.64001f,mp4a.40.2"\n720p/playlist.m3u8\n')


def test_key_info_and_local_playlist(tmp_path):
    info = write_key_info(tmp_path / "k", b"k" * 16, b"\x01" * 16, "https://keys/v1")
    lines = info.read_text().splitlines()
    assert lines == ["https://keys/v1", str(tmp_path / "k" / "aes128.key"), "01" * 16]
    pl = tmp_path / "720p" / "playlist.m3u8"
    pl.parent.mkdir()
    pl.write_text('#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="https://keys/v1",IV=0x01\n#EXTINF:10.0,\nsegment_00000.ts\n'
                  "#EXTINF:2.5,\nsegment_00001.ts\n#EXT-X-ENDLIST\n")
    assert parse_media_playlist(pl) == [("segment_00000.ts", 10.0), ("segment_00001.ts", 2.5)]
    local = write_local_playlist(pl, tmp_path / "key.bin", tmp_path / "priv" / "l.m3u8").read_text()
    assert f'URI="{tmp_path / "key.bin"}"' in local and str(pl.parent / "segment_00000.ts") in local


def test_hls_ladder_args_single_decode():
    rungs = [r.spec() for r in plan_ladder((1920, 1080), load_config().hls.quality_levels)]
    args = fc.hls_ladder_args("in.mp4", "out", rungs, fps=25, has_audio=True, key_info_file="k.info", preset="fast")
    assert args.count("-i") == 1
    graph = args[args.index("-filter_complex") + 1]
    assert "split=4" in graph and graph.count("scale=") == 4
    assert args[args.index("-force_key_frames") + 1] == "expr:gte(t,n_forced*10)"
    assert args[args.index("-sc_threshold") + 1] == "0" and args[args.index("-g") + 1] == "250"
    assert args[args.index("-var_stream_map") + 1] == ("v:0,a:0,name:1080p v:1,a:1,name:720p "
                                                       "v:2,a:2,name:480p v:3,a:3,name:360p")
    for flag, value in (("-hls_time", "10"), ("-hls_playlist_type", "vod"), ("-hls_segment_type", "mpegts"),
                        ("-hls_key_info_file", "k.info"), ("-preset", "fast"), ("-f", "hls")):
        assert args[args.index(flag) + 1] == value
    no_audio = fc.hls_ladder_args("in.mp4", "out", rungs[:1], fps=25, has_audio=False)
    assert "0:a:0" not in no_audio and no_audio[no_audio.index("-var_stream_map") + 1] == "v:0,name:1080p"


def test_seed_per_profile_commands_decode_once_per_profile():
    cmds = fc.seed_per_profile_commands("in.mp4", [("720p", 1280, 720, 2_500_000), ("480p", 854, 480, 1_000_000)],
                                        "out")
    assert len(cmds) == 2 and all(c.count("-i") == 1 for c in cmds)
    assert cmds[0][cmds[0].index("-b:v") + 1] == "2500k" and cmds[0][cmds[0].index("-s") + 1] == "1280x720"
    assert cmds[1][-1] == str(Path("out") / "480p.mp4")


def test_storyboard_vtt():
    vtt = storyboard_vtt(3, 12.0, 5.0, "sb.jpg", 160, 90, 2)
    assert "00:00:10.000 --> 00:00:12.000\nsb.jpg#xywh=0,90,160,90" in vtt
    assert vtt.count("#xywh=") == 3


STDERR = """\
[Parsed_showinfo_3 @ 0x55] n:   0 pts:    125 pts_time:5       duration:      1 fmt:yuv420p
[Parsed_showinfo_3 @ 0x55] n:   1 pts:    175 pts_time:7.04    duration:      1 fmt:yuv420p
[blackdetect @ 0x56] black_start:5 black_end:7 black_duration:2
[silencedetect @ 0x57] silence_start: 4.00129
[silencedetect @ 0x57] silence_end: 7.00002 | silence_duration: 2.99873
[silencedetect @ 0x57] silence_start: 11.5
[Parsed_ebur128_1 @ 0x58] Summary:

  Integrated loudness:
    I:         -21.8 LUFS
    Threshold: -32.1 LUFS

  Loudness range:
    LRA:         7.9 LU

  True peak:
    Peak:      -14.0 dBFS
"""


def test_analysis_parsers():
    assert parse_scene_changes(STDERR) == [5.0, 7.04]
    assert [(b.start, b.end) for b in parse_black(STDERR)] == [(5.0, 7.0)]
    assert [(s.start, s.end) for s in parse_silence(STDERR, 12.0)] == [(4.00129, 7.00002), (11.5, 12.0)]
    loud = parse_loudness(STDERR)
    assert (loud.integrated_lufs, loud.loudness_range_lu, loud.true_peak_dbfs) == (-21.8, 7.9, -14.0)
    assert parse_loudness("no summary") is None


def test_chapters_merge_close_cuts():
    ch = chapters_from_scenes([5.0, 7.0, 30.0, 58.0], 60.0, 5.0)
    assert [(c.start, c.end) for c in ch] == [(0.0, 5.0), (5.0, 30.0), (30.0, 60.0)]
    assert chapters_from_scenes([], 10.0, 5.0)[0].title == "Chapter 1"


def _rq(name, h, size, ssim, psnr):
    return RungQuality(name, h * 16 // 9, h, size, size * 8 // 10, 0, ssim, ssim_to_db(ssim), psnr)


def test_prune_ladder_rule():
    rungs = [_rq("1080p", 1080, 4000, 0.9805, 40.2), _rq("720p", 720, 2000, 0.9800, 40.0),
             _rq("480p", 480, 1000, 0.95, 35.0), _rq("360p", 360, 500, 0.90, 31.0)]
    d = prune_ladder(rungs)
    assert d.kept == ("720p", "480p", "360p") and d.dropped == ("1080p",)
    # a rung that is not more expensive is never dropped
    cheap = [_rq("720p", 720, 400, 0.90, 31.0), _rq("360p", 360, 500, 0.90, 31.0)]
    assert prune_ladder(cheap).dropped == ()


def test_sample_window():
    assert sample_window(12.0, 20.0) == (0.0, 12.0)
    assert sample_window(100.0, 20.0) == (40.0, 20.0)
