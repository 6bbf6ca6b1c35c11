"""One real viewer for ``framelog demo``: the web player (``GET /player/{id}``) in headless chromium.

The viewer opens a share link the way a person would: the page asks
``GET /v1/stream`` with the link's token, plays the encrypted HLS through the
edge with hls.js, fetches the key with its grant, and reports its own
playback events (heartbeats, quality switches, pause, seek, ended) to
``/v1/events``; what still waits when the page is left goes out by
``sendBeacon``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from framelog.demo.browser import Browser, BrowserError, missing_requirements

PLAY_SECONDS = 10.0          # how long the viewer watches before the screenshot
PLAYER_DEADLINE = 60.0       # page ready, playback reaching a point, the end
SESSION_ID = re.compile(r"^[0-9a-f-]{32,36}$")   # a UUID, with or without dashes (checked before it meets SQL)

__all__ = ["BrowserSession", "BrowserError", "missing_requirements", "play_share_link", "player_url"]


@dataclass(frozen=True)
class BrowserSession:
    session_id: str
    viewer_id: str
    screenshot: Path
    manifest_url: str
    quality: str | None
    switches: list[dict]
    sent: list[str]            # event types the page had sent by fetch before it was left
    beaconed: list[str]        # event types still queued when it was left (sent by sendBeacon)
    fragments: int


def player_url(api_url: str, video_id: str, share_token: str) -> str:
    return f"{api_url}/player/{video_id}?{urlencode({'share': share_token})}"


def play_share_link(url: str, screenshot: Path) -> BrowserSession:
    """Open the player at ``url``, watch PLAY_SECONDS, screenshot, pause, play the last second out, leave."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with Browser() as b:
        b.goto(url)
        opened = b.wait("window.framelogPlayer && (framelogPlayer.ready || framelogPlayer.error) "
                        "&& {ready: framelogPlayer.ready, error: framelogPlayer.error}", PLAYER_DEADLINE)
        if not opened.get("ready"):
            raise BrowserError(f"the player did not start: {opened.get('error')}\n" + "\n".join(b.log()[-20:]))
        b.wait(f"document.getElementById('video').currentTime >= {PLAY_SECONDS}", PLAY_SECONDS + PLAYER_DEADLINE)
        b.screenshot(screenshot)
        b.eval("document.getElementById('video').pause()")
        b.wait("framelogPlayer.flush().then(() => true)", PLAYER_DEADLINE)
        # the viewer skips to the last second and watches it out: the player reports seek and ended
        b.wait("(() => { const v = document.getElementById('video'); v.currentTime = Math.max(0, v.duration - 1);"
               " return v.play().then(() => true); })()", PLAYER_DEADLINE)
        b.wait("document.getElementById('video').ended", PLAYER_DEADLINE)
        state = b.eval("({session: framelogPlayer.sessionId, viewer: framelogPlayer.viewerId, "
                       "manifest: framelogPlayer.info.manifestUrl, quality: framelogPlayer.playing || "
                       "framelogPlayer.quality, switches: framelogPlayer.switches, "
                       "sent: framelogPlayer.sent.map(e => e.type), "
                       "queued: framelogPlayer.batcherQueue().map(e => e.type), "
                       "fragments: framelogPlayer.loadedFragments.length})")
        b.goto("about:blank")                     # pagehide: the queued events leave by sendBeacon
    if not SESSION_ID.match(str(state["session"])):
        raise BrowserError(f"the player reported an unexpected session id {state['session']!r}")
    return BrowserSession(session_id=state["session"], viewer_id=state["viewer"], screenshot=screenshot,
                          manifest_url=state["manifest"], quality=state["quality"], switches=state["switches"],
                          sent=state["sent"], beaconed=state["queued"], fragments=state["fragments"])
