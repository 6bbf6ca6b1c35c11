"""An operator's overlay on transcoding_profiles / hls_config changes what ffmpeg produces."""
import subprocess

from framelog.core.config import load_config
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import PLAYLIST_NAME, package_hls
from tests.media.support import PRESET


def test_profile_overlay_changes_the_produced_ladder(clip, tmp_path, monkeypatch):
    """Remove the 480p rung, halve 360p's bitrate and ask for EVENT playlists, in an overlay file."""
    overlay = tmp_path / "ladder.yaml"
    overlay.write_text("""
processing_pipeline:
  transcoding_profiles:
    - {name: "720p_profile", resolution: "1280x720", bitrate: "2500k", codec: "h264"}
    - {name: "360p_profile", resolution: "640x360", bitrate: "250k", codec: "h264"}
hls_config:
  playlist_type: "EVENT"
""")
    monkeypatch.delenv("FRAMELOG_CONFIG_OVERLAY", raising=False)
    base = load_config()
    changed = load_config(overlay=overlay)

    default = package_hls(clip("landscape.mp4"), tmp_path / "base", "vid-base", base.hls, preset=PRESET,
                          encrypt=False)
    result = package_hls(clip("landscape.mp4"), tmp_path / "over", "vid-over", changed.hls, preset=PRESET,
                         encrypt=False)

    assert [r.name for r in default.renditions] == ["720p", "480p", "360p"]
    assert [r.name for r in result.renditions] == ["720p", "360p"]
    assert not (tmp_path / "over" / "480p").exists()
    low_base, low = default.rendition("360p"), result.rendition("360p")
    assert low.target_bitrate == 250_000 and low_base.target_bitrate == 500_000
    assert low.average_bandwidth < low_base.average_bandwidth          # the encoder obeyed the new bitrate
    master = result.master_playlist.read_text()
    assert "480p/" not in master and "360p/playlist.m3u8" in master
    for r in result.renditions:
        text = (tmp_path / "over" / r.name / PLAYLIST_NAME).read_text()
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text and "#EXT-X-ENDLIST" in text
        assert r.codecs.startswith("avc1.")
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in (tmp_path / "base" / "720p" / PLAYLIST_NAME).read_text()


def test_every_supported_codec_has_an_encoder_in_this_ffmpeg():
    """The codecs config accepts are encoders this machine's ffmpeg really has."""
    listing = subprocess.run([fc.FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    for encoder, _ in fc.VIDEO_ENCODERS.values():
        assert f" {encoder} " in listing
