"""Captions with real ffmpeg and the pocketsphinx model from the wheel, on speech made offline by espeak-ng."""
from __future__ import annotations

import dataclasses
import re
import shutil
import time

import pytest

from framelog.processors.media import captions
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import (
    MASTER_NAME,
    media_start_pts,
    package_hls,
    parse_media_playlist,
    write_master,
    write_subtitle_track,
)
from framelog.processors.media.probe import probe
from tests.media.support import PRESET

if shutil.which("espeak-ng") is None:  # pragma: no cover
    pytest.skip("espeak-ng not installed (scripts/bootstrap.sh installs it)", allow_module_level=True)

# Words of clips.SPOKEN_SENTENCE that the small model tends to get; it is weak, so any one will do.
DISTINCTIVE = {"hello", "world", "weather", "today", "sunny", "warm", "open", "door", "turn", "light"}


@pytest.fixture(scope="module")
def speech_captions(clip, cfg, tmp_path_factory):
    seen: list[float] = []
    found = captions.transcribe(clip("speech.mp4"), tmp_path_factory.mktemp("asr"), cfg.media.captions,
                                progress=seen.append)
    return found, seen


def test_spoken_sentence_is_recognised_with_timed_cues(speech_captions, clip):
    found, seen = speech_captions
    duration = probe(clip("speech.mp4")).duration
    assert found is not None and found.cues
    heard = {w for c in found.cues for w in c.text.split()}
    assert heard & DISTINCTIVE, heard
    for c in found.cues:
        assert 0 <= c.start < c.end <= duration
    assert all(a.end <= b.start for a, b in zip(found.cues, found.cues[1:]))
    assert found.cues[-1].end < duration - 1          # the clip's padded tail is silence: no words there
    assert seen and seen == sorted(seen) and seen[-1] == 1.0
    vtt = found.to_webvtt()
    assert vtt.startswith("WEBVTT\n") and "-->" in vtt


@pytest.mark.parametrize("name", ["silent.mp4", "scenes.mp4"])
def test_silence_and_tones_give_no_captions(clip, cfg, tmp_path, name):
    assert captions.transcribe(clip(name), tmp_path, cfg.media.captions) is None


def test_a_video_without_audio_is_skipped_before_any_work(clip, cfg):
    assert captions.skip_reason(probe(clip("noaudio.mp4")), cfg.media.captions) == "no_audio"
    assert captions.transcribe(clip("noaudio.mp4"), "/nonexistent", cfg.media.captions) is None


def test_recognition_is_stopped_after_its_time_budget(clip, cfg, tmp_path):
    settings = dataclasses.replace(cfg.media.captions, max_recognition_time=0.2)
    started = time.monotonic()
    with pytest.raises(captions.CaptionsTimedOut):
        captions.transcribe(clip("speech.mp4"), tmp_path, settings)
    assert time.monotonic() - started < 30
    assert not list(tmp_path.iterdir())                 # the extracted audio is removed


def test_captions_become_an_hls_subtitles_rendition(speech_captions, clip, cfg, tmp_path):
    found, _ = speech_captions
    result = package_hls(clip("speech.mp4"), tmp_path / "hls", "vid-speech", cfg.hls, preset=PRESET, encrypt=False)
    offset = media_start_pts(result, tmp_path)
    first_ts = fc.run_json(fc.ffprobe_args(result.out_dir / result.renditions[0].name / "segment_00000.ts",
                                           entries="format=start_time"))
    assert offset == round(float(first_ts["format"]["start_time"]) * 90000) > 0
    duration = max(r.duration for r in result.renditions)
    segments = [(d, captions.webvtt(cues, mpegts_offset=offset))
                for d, cues in captions.segment_cues(found.cues, duration, result.segment_duration)]
    track = write_subtitle_track(result.out_dir, segments, language="en-US", name="English")
    master = write_master(result.out_dir, result.renditions, [track]).read_text()
    uri = re.search(r'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",.*URI="([^"]+)"', master).group(1)
    assert master.count('SUBTITLES="subs"') == len(result.renditions)
    playlist = result.out_dir / uri
    entries = parse_media_playlist(playlist)
    assert abs(sum(d for _, d in entries) - duration) < 0.01
    assert "#EXT-X-ENDLIST" in playlist.read_text()
    seen_text = []
    for name, _ in entries:
        vtt = (playlist.parent / name).read_text()
        assert vtt.splitlines()[1] == f"X-TIMESTAMP-MAP=MPEGTS:{offset},LOCAL:00:00:00.000"
        probe_json = fc.run_json(fc.ffprobe_args(playlist.parent / name, entries="stream=codec_name"))
        assert probe_json["streams"][0]["codec_name"] == "webvtt"       # ffmpeg parses every segment
        seen_text += re.findall(r"-->.*\n(.+)", vtt)
    assert {c.text for c in found.cues} <= set(seen_text)
    assert (result.out_dir / MASTER_NAME).read_text() == master


def test_media_start_pts_reads_encrypted_renditions(landscape_hls, tmp_path):
    result, _ = landscape_hls
    assert result.encrypted
    assert 0 < media_start_pts(result, tmp_path) < result.segment_duration * 90000
