"""Captions through the whole pipeline: ai_processing recognises speech, optimization makes the
subtitles rendition, cdn_upload publishes it with its content type and Cache-Control."""
from __future__ import annotations

import re
import shutil

import pytest

from framelog.core import object_keys
from framelog.processors import cache_control as cc
from framelog.streams import topics
from tests.integration.support.pipeline import process_clip, read_topic
from tests.media.support import clips

pytestmark = pytest.mark.integration

if shutil.which("espeak-ng") is None:  # pragma: no cover
    pytest.skip("espeak-ng not installed (scripts/bootstrap.sh installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def spoken(config, worker, status, tmp_path_factory):
    """One spoken clip through the whole pipeline: (video_id, status view)."""
    return process_clip(config, status, clips.speech(tmp_path_factory.mktemp("speech") / "speech.mp4"))


def test_spoken_video_is_published_with_a_subtitles_track(config, spoken, store):
    video_id, view = spoken
    assert view["state"] == "ready", view
    assert view["stages"]["ai_processing"]["outputs"]["captions"] == "ok"

    master = store.get_bytes(object_keys.master_playlist(video_id)).decode()
    media = re.search(r'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en-US",.*'
                      r'URI="([^"]+)"', master)
    assert media, master
    infs = re.findall(r"#EXT-X-STREAM-INF:.*", master)
    assert infs and all('SUBTITLES="subs"' in line for line in infs)

    playlist_key = f"hls/{video_id}/{media.group(1)}"
    head = store.head(playlist_key)
    assert head["ContentType"] == "application/vnd.apple.mpegurl"
    assert head["CacheControl"] == cc.cache_control(cc.HLS_PLAYLISTS, config.cdn.caching_rules)
    playlist = store.get_bytes(playlist_key).decode()
    segments = [line for line in playlist.splitlines() if line.endswith(".vtt")]
    assert segments and "#EXT-X-ENDLIST" in playlist
    base = playlist_key.rsplit("/", 1)[0]
    text = ""
    for name in segments:
        head = store.head(f"{base}/{name}")
        assert head["ContentType"].startswith("text/vtt")
        assert head["CacheControl"] == cc.cache_control(cc.HLS_SEGMENTS, config.cdn.caching_rules)
        body = store.get_bytes(f"{base}/{name}").decode()
        assert body.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:")
        text += body
    assert "-->" in text

    published = read_topic(config, topics.ASSETS, video_id)
    assert len(published) == 1
    meta = published[0][1]["metadata"]
    assert meta["captions"] == "ok" and meta["captions_playlist_key"] == playlist_key
    whole = store.get_bytes(meta["captions_key"]).decode()                   # the whole-file WebVTT too
    assert whole.startswith("WEBVTT") and "-->" in whole
    # the stage's own cues JSON was staging (discarded once published): read the published track's timings
    def seconds(t: str) -> float:
        h, m, s = t.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    cues = [(seconds(a), seconds(b)) for a, b in re.findall(r"(\d+:\d\d:\d\d\.\d+) --> (\d+:\d\d:\d\d\.\d+)", whole)]
    assert cues and all(0 <= a < b <= 10 for a, b in cues)


@pytest.mark.parametrize("kind, rule", [
    ("master", cc.HLS_PLAYLISTS), ("rendition playlist", cc.HLS_PLAYLISTS), ("segment", cc.HLS_SEGMENTS),
    ("poster", cc.THUMBNAILS), ("sprite", cc.THUMBNAILS), ("thumbnail", cc.THUMBNAILS), ("storyboard", cc.THUMBNAILS),
    ("chapters", cc.THUMBNAILS), ("source mp4", cc.VIDEO_FILES),
])
def test_every_published_file_type_has_the_seeds_cache_control(config, spoken, store, kind, rule):
    video_id, view = spoken
    master = store.get_bytes(object_keys.master_playlist(video_id)).decode()
    rendition = re.search(r"^(\S+)/playlist\.m3u8$", master, re.M).group(1)
    key = {"master": object_keys.master_playlist(video_id),
           "rendition playlist": object_keys.rendition_playlist(video_id, rendition),
           "segment": object_keys.hls_file(video_id, rendition, "segment_00000.ts"),
           "poster": object_keys.thumbnail(video_id, "poster.jpg"),
           "sprite": object_keys.thumbnail(video_id, "storyboard.jpg"),
           "thumbnail": object_keys.thumbnail(video_id, "thumbs/thumb_00001.jpg"),
           "storyboard": object_keys.thumbnail(video_id, "storyboard.vtt"),
           "chapters": object_keys.chapters_vtt(video_id),
           "source mp4": view["stages"]["validation"]["outputs"]["source_key"]}[kind]
    head = store.head(key)
    assert head is not None, key
    assert head["CacheControl"] == cc.cache_control(rule, config.cdn.caching_rules), (key, head["CacheControl"])
    assert head["ContentType"] == cc.content_type_for_key(key)
    seconds = {cc.HLS_PLAYLISTS: 3600, cc.HLS_SEGMENTS: 86400, cc.THUMBNAILS: 7 * 86400,
               cc.VIDEO_FILES: 30 * 86400}[rule]                        # the seed's lifetimes
    assert f"s-maxage={seconds}" in head["CacheControl"]


def test_silent_video_gets_no_captions_and_no_error(config, worker, status, store, tmp_path):
    video_id, view = process_clip(config, status, clips.silent_audio(tmp_path / "silent.mp4"))
    assert view["state"] == "ready", view
    assert view["stages"]["ai_processing"]["outputs"]["captions"] == "no_speech"
    master = store.get_bytes(object_keys.master_playlist(video_id)).decode()
    assert "TYPE=SUBTITLES" not in master and "SUBTITLES=" not in master
