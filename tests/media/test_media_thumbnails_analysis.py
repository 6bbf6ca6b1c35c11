"""Thumbnails, storyboard and one-pass analysis."""
import json
import re

import pytest

from framelog.processors.media.analysis import analyze
from framelog.processors.media.probe import probe
from framelog.processors.media.thumbnails import generate_thumbnails
from tests.media.support import clips


def test_thumbnails_sprite_and_storyboard(clip, tmp_path):
    th = generate_thumbnails(clip("scenes.mp4"), tmp_path, interval=5)
    assert th.poster.read_bytes()[:2] == b"\xff\xd8"
    assert len(th.thumbnails) == 3  # t = 0, 5, 10 of a 12 s clip
    assert (th.tile_width, th.tile_height, th.columns, th.rows) == (160, 90, 3, 1)
    sprite = probe(th.sprite)
    assert (sprite.width, sprite.height) == (480, 90)
    vtt = th.storyboard.read_text()
    assert vtt.startswith("WEBVTT")
    cues = re.findall(r"(\S+) --> (\S+)\n(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)", vtt)
    assert [(c[0], c[1]) for c in cues] == [("00:00:00.000", "00:00:05.000"), ("00:00:05.000", "00:00:10.000"),
                                           ("00:00:10.000", "00:00:12.000")]
    assert [c[3:] for c in cues] == [("0", "0", "160", "90"), ("160", "0", "160", "90"), ("320", "0", "160", "90")]
    assert all(c[2] == "storyboard.jpg" for c in cues)


def test_thumbnails_of_portrait_and_tiny_clip(clip, tmp_path):
    th = generate_thumbnails(clip("portrait.mp4"), tmp_path / "p", interval=2)
    assert th.tile_height > th.tile_width
    th = generate_thumbnails(clip("short.mp4"), tmp_path / "s", interval=5)
    assert th.poster.stat().st_size > 0 and len(th.thumbnails) == 1


def test_analysis_finds_cuts_black_and_silence(clip):
    a = analyze(clip("scenes.mp4"))
    assert any(abs(t - 5.0) < 0.1 for t in a.scene_changes)
    assert any(abs(t - 7.0) < 0.1 for t in a.scene_changes)
    assert [c.start for c in a.chapters][0] == 0.0 and a.chapters[-1].end == pytest.approx(12.0, abs=0.1)
    assert len(a.chapters) >= 2
    assert any(b.start == pytest.approx(5.0, abs=0.1) and b.end == pytest.approx(7.0, abs=0.1)
               for b in a.black_segments)
    assert any(s.start == pytest.approx(4.0, abs=0.1) and s.end == pytest.approx(7.0, abs=0.1)
               for s in a.silence_segments)
    assert a.loudness and -40 < a.loudness.integrated_lufs < 0 and a.loudness.true_peak_dbfs < 0
    assert a.loudness.loudness_range_lu is not None
    assert json.loads(a.to_json())["scene_changes"] == list(a.scene_changes)


def test_analysis_of_silent_and_mute_clips(clip):
    silent = analyze(clip("silent.mp4"))
    assert len(silent.silence_segments) == 1 and silent.silence_segments[0].start == 0.0
    assert silent.loudness.integrated_lufs is None
    json.loads(silent.to_json())
    mute = analyze(clip("noaudio.mp4"))
    assert mute.loudness is None and mute.silence_segments == () and mute.scene_changes == ()


def test_analysis_of_a_long_video_without_a_scene_change(tmp_path):
    """15 minutes with no cut: the video side of the one-pass analysis passes no frame, and in one output its
    muxer held back all the audio until ffmpeg failed ("Too many packets buffered"; a 2-hour upload failed
    ai_processing three times). Two null outputs, one per stream, finish."""
    src = clips.long_clip(tmp_path / "long.mp4", hours=0.25, piece_seconds=900)
    a = analyze(src)
    assert a.scene_changes == ()
    assert [(c.start, round(c.end)) for c in a.chapters] == [(0.0, 900)]
    assert a.loudness and a.loudness.integrated_lufs is not None
