"""The ladder comes from transcoding_profiles; unsupported codecs and playlist types are refused by key."""
import copy

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config
from framelog.core.errors import ConfigError
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.ladder import plan_ladder


@pytest.fixture
def raw():
    return copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))


def profiles(data):
    return data["processing_pipeline"]["transcoding_profiles"]


def test_default_ladder_is_the_profiles_named_after_their_hls_levels(raw):
    cfg = build_config(raw)
    assert [(q.name, q.width, q.height, q.bitrate, q.bandwidth, q.codec) for q in cfg.hls.quality_levels] == [
        ("4K", 3840, 2160, 15_000_000, 15_000_000, "h264"), ("1080p", 1920, 1080, 5_000_000, 5_000_000, "h264"),
        ("720p", 1280, 720, 2_500_000, 2_500_000, "h264"), ("480p", 854, 480, 1_000_000, 1_000_000, "h264"),
        ("360p", 640, 360, 500_000, 500_000, "h264")]
    assert cfg.hls.playlist_type == "VOD"


@pytest.mark.parametrize("codec", ["vp9", "hevc", "h265", "av1"])
def test_unsupported_codec_is_refused_with_its_key(raw, codec):
    profiles(raw)[1]["codec"] = codec
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    assert err.value.key == "processing_pipeline.transcoding_profiles[1].codec"
    assert str(err.value) == (f"processing_pipeline.transcoding_profiles[1].codec: {codec!r} is not supported "
                              f"for profile '1080p_profile' (supported: h264)")


def test_codec_is_case_insensitive(raw):
    profiles(raw)[0]["codec"] = "H264"
    assert build_config(raw).hls.quality_levels[0].codec == "h264"


def test_two_profiles_for_one_rung_are_refused(raw):
    profiles(raw)[2]["name"] = "1080P_profile"
    with pytest.raises(ConfigError, match=r"transcoding_profiles\[2\]\.name"):
        build_config(raw)


@pytest.mark.parametrize("value", ["LIVE", "vod2", ""])
def test_unsupported_playlist_type_is_refused(raw, value):
    raw["hls_config"]["playlist_type"] = value
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    assert err.value.key == "hls_config.playlist_type"
    assert "supported: EVENT, VOD" in str(err.value)


def test_removed_changed_and_added_profiles_change_the_ladder(raw):
    pr = profiles(raw)
    pr[:] = [p for p in pr if p["name"] != "720p_profile"]                      # remove a rung
    next(p for p in pr if p["name"] == "480p_profile")["bitrate"] = "1200k"      # change a bitrate
    pr.append({"name": "240p_profile", "resolution": "426x240", "bitrate": "300k", "codec": "h264"})  # add one
    cfg = build_config(raw)
    ladder = {q.name: q for q in cfg.hls.quality_levels}
    assert list(ladder) == ["4K", "1080p", "480p", "360p", "240p"]
    assert ladder["480p"].bitrate == 1_200_000 and ladder["480p"].bandwidth == 1_200_000
    assert ladder["240p"].bandwidth == 300_000                                    # no HLS level: its own bitrate
    rungs = plan_ladder((1920, 1080), cfg.hls.quality_levels)
    assert [(r.name, r.video_bitrate) for r in rungs] == [
        ("1080p", 5_000_000), ("480p", 1_200_000), ("360p", 500_000), ("240p", 300_000)]


def test_command_builder_uses_each_rungs_encoder_and_the_playlist_type(raw):
    raw["hls_config"]["playlist_type"] = "event"
    cfg = build_config(raw)
    rungs = [r.spec() for r in plan_ladder((1280, 720), cfg.hls.quality_levels)]
    args = fc.hls_ladder_args("in.mp4", "out", rungs, fps=25, has_audio=True, playlist_type=cfg.hls.playlist_type)
    assert args[args.index("-hls_playlist_type") + 1] == "event"
    for i in range(len(rungs)):
        assert args[args.index(f"-c:v:{i}") + 1] == "libx264"
        assert args[args.index(f"-profile:v:{i}") + 1] == "high"
    assert "-c:v" not in args
