"""Captions: the pure parts (tokens, cues, WebVTT, the HLS segment grid, the subtitles master)."""
from __future__ import annotations

import pytest

from framelog.core.config import CaptionsConfig
from framelog.processors.media import captions
from framelog.processors.media.captions import Cue, Word
from framelog.processors.media.hls import Rendition, SubtitleTrack, master_playlist_text


@pytest.mark.parametrize("token, text", [
    ("<s>", None), ("</s>", None), ("<sil>", None), ("[NOISE]", None), ("++UH++", None),
    ("the(2)", "the"), ("weather", "weather"), ("they're", "they're"),
])
def test_clean_word(token, text):
    assert captions.clean_word(token) == text


def _w(text, start, end, stretch=0):
    return Word(text, start, end, stretch)


def test_words_become_cues_per_stretch_and_limits():
    words = [_w("a", 0.0, 0.2), _w("b", 0.3, 0.5), _w("c", 0.6, 0.8),            # stretch 0
             _w("d", 2.0, 2.2, 1), _w("e", 2.3, 2.5, 1), _w("f", 9.0, 9.4, 1)]  # f is > 5 s after d
    cues = captions.words_to_cues(words, max_cue_duration=5.0, max_cue_words=2)
    assert [c.text for c in cues] == ["a b", "c", "d e", "f"]
    assert cues[0] == Cue(0.0, 0.5, "a b")
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:]))


def test_cues_are_clamped_to_the_duration_and_never_overlap():
    words = [_w("a", 0.0, 1.0), _w("b", 0.8, 1.5, 1), _w("c", 2.9, 3.4, 2)]
    cues = captions.words_to_cues(words, max_cue_duration=5, max_cue_words=10, duration=3.0)
    assert cues == [Cue(0.0, 1.0, "a"), Cue(1.0, 1.5, "b"), Cue(2.9, 3.0, "c")]


def test_webvtt_with_and_without_timestamp_map():
    cues = [Cue(0.05, 0.91, "hello <world> & co"), Cue(61.5, 3725.25, "later")]
    plain = captions.webvtt(cues)
    assert plain.startswith("WEBVTT\n\n1\n00:00:00.050 --> 00:00:00.910\nhello &lt;world&gt; &amp; co\n")
    assert "00:01:01.500 --> 01:02:05.250\nlater\n" in plain
    mapped = captions.webvtt(cues, mpegts_offset=126000)
    assert mapped.splitlines()[:2] == ["WEBVTT", "X-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000"]
    assert captions.webvtt([], mpegts_offset=0).startswith("WEBVTT\nX-TIMESTAMP-MAP")


def test_segment_cues_follow_the_video_grid_and_repeat_crossing_cues():
    cues = [Cue(1, 2, "a"), Cue(9.5, 10.5, "b"), Cue(21, 22, "c")]
    segs = captions.segment_cues(cues, duration=24.0, segment_seconds=10)
    assert [round(d, 3) for d, _ in segs] == [10, 10, 4]
    assert [[c.text for c in cs] for _, cs in segs] == [["a", "b"], ["b"], ["c"]]
    assert captions.segment_cues([], duration=0.5, segment_seconds=10)[0][0] == 0.5


def test_json_round_trip():
    c = captions.Captions("en-US", (Cue(0.0, 1.0, "hi"),), 1, 3.0, 0.5)
    assert captions.cues_from_json(captions.cues_to_json(c)) == c


@pytest.mark.parametrize("enabled, has_audio, duration, reason", [
    (False, True, 10, "disabled"), (True, False, 10, "no_audio"), (True, True, 601, "too_long"),
    (True, True, 600, None),
])
def test_skip_reason(enabled, has_audio, duration, reason):
    class Info:
        pass
    info = Info()
    info.has_audio, info.duration = has_audio, duration
    settings = CaptionsConfig(enabled, "en-US", 600.0, 480.0, 5.0, 10)
    assert captions.skip_reason(info, settings) == reason


def test_bundled_model_is_inside_the_package():
    path = captions.model_dir("en-US")
    assert (path / "en-us" / "mdef").is_file() and (path / "en-us.lm.bin").is_file()
    assert (path / "cmudict-en-us.dict").is_file()
    with pytest.raises(captions.CaptionsUnavailable):
        captions.model_dir("xx-YY")


def test_master_names_the_subtitles_group_on_every_variant():
    r = Rendition("360p", 640, 360, 25.0, 500_000, 600_000, 550_000, "avc1.64001e,mp4a.40.2",
                  "360p/playlist.m3u8", 10.0, 1000, ())
    text = master_playlist_text([r, r], [SubtitleTrack("en-US", "English", "subtitles/en-us/playlist.m3u8")])
    media = [line for line in text.splitlines() if line.startswith("#EXT-X-MEDIA:")]
    assert media == ['#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en-US",DEFAULT=NO,'
                     'AUTOSELECT=YES,FORCED=NO,URI="subtitles/en-us/playlist.m3u8"']
    infs = [line for line in text.splitlines() if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(infs) == 2 and all(line.endswith(',SUBTITLES="subs"') for line in infs)
    assert "SUBTITLES" not in master_playlist_text([r])
