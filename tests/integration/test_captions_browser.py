"""The captions rendition as hls.js sees it, in Debian's chromium: the subtitles track is
listed, and its cues land at the times the recogniser gave (X-TIMESTAMP-MAP done right).

No stack needed: ffmpeg packages a spoken clip, the captions are written the way the
optimization stage writes them, and a local HTTP server on a free port serves the files.
"""
from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from framelog.demo import browser
from framelog.processors.media import captions
from framelog.processors.media.hls import media_start_pts, package_hls, write_master, write_subtitle_track
from tests.media.support import clips

pytestmark = pytest.mark.integration

HLS_JS = browser.ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js"

PAGE = """<!doctype html><meta charset="utf-8"><video id="v" muted playsinline></video>
<script src="hls.min.js"></script><script>
window.errors = []; window.cues = null; window.tracks = null;
const v = document.getElementById('v');
const hls = new Hls({subtitleDisplay: true});
hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (e, d) => {   // the tracks of the playing variant's group
  window.tracks = d.subtitleTracks.map(t => ({name: t.name, lang: t.lang}));
});
hls.on(Hls.Events.LEVEL_LOADED, () => setTimeout(() => { hls.subtitleTrack = 0; }, 0));  // a viewer turns captions on
hls.on(Hls.Events.SUBTITLE_TRACK_LOADED, () => v.play().catch(e => window.errors.push(String(e))));
hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) window.errors.push(d.type + ':' + d.details); });
hls.loadSource('master.m3u8'); hls.attachMedia(v);
setInterval(() => {
  for (const t of v.textTracks) {
    if (t.cues && t.cues.length) window.cues = Array.from(t.cues).map(c => [c.startTime, c.endTime, c.text]);
  }
}, 200);
</script>"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path):
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_hls_js_shows_the_captions_at_the_recognised_times(config, served, tmp_path_factory):
    why = browser.missing_requirements() or (None if shutil.which("espeak-ng") else "espeak-ng is missing")
    if why or not HLS_JS.exists():
        pytest.skip(why or "hls.js is missing (npm ci)")
    root, base = served
    src = clips.speech(tmp_path_factory.mktemp("speech") / "speech.mp4")
    found = captions.transcribe(src, tmp_path_factory.mktemp("asr"), config.media.captions)
    assert found is not None and found.cues
    result = package_hls(src, root, "vid-cc", config.hls, preset="ultrafast", encrypt=False)
    offset = media_start_pts(result, tmp_path_factory.mktemp("pts"))
    duration = max(r.duration for r in result.renditions)
    segments = [(d, captions.webvtt(cues, mpegts_offset=offset))
                for d, cues in captions.segment_cues(found.cues, duration, result.segment_duration)]
    track = write_subtitle_track(root, segments, language=found.language, name=captions.language_name(found.language))
    write_master(root, result.renditions, [track])
    shutil.copy(HLS_JS, root / "hls.min.js")
    (root / "index.html").write_text(PAGE)

    with browser.Browser() as b:
        b.goto(f"{base}/index.html")
        tracks = b.wait("window.tracks", 30)
        assert tracks == [{"name": "English", "lang": "en-US"}]
        shown = b.wait(f"window.cues && window.cues.length >= {len(found.cues)} && window.cues", 60)
        assert b.eval("window.errors") == []
    assert len(shown) == len(found.cues)
    for (start, end, text), cue in zip(sorted(shown), found.cues):
        assert text == cue.text
        assert start == pytest.approx(cue.start, abs=0.05) and end == pytest.approx(cue.end, abs=0.05)
