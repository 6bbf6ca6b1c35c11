"""Download a video's HLS through the signed edge URLs of ``GET /v1/stream``, as a player does.

The master URL carries its signature in the path, and relative URIs in the
playlists resolve under that same signature, so the master leads to every
rendition playlist and segment on the same edge. Each answer's ``X-Edge``
and ``X-Cache-Status`` are kept: what the edge served from its cache (a HIT
after the cdn warm) and what it had to ask the origin for (MISS).
"""
from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from framelog.sinks.edges.cache_commands import is_media_playlist, playlist_uris

REQUEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class EdgeAnswer:
    name: str             # path under the master's directory, e.g. "720p/seg_001.ts"
    edge: str             # X-Edge: the provider whose nginx answered
    cache: str            # X-Cache-Status: HIT, MISS, ...
    size: int


@dataclass
class EdgeDownload:
    root: Path                                   # the master's directory, mirrored locally
    answers: list[EdgeAnswer] = field(default_factory=list)

    @property
    def master(self) -> Path:
        return self.root / self.answers[0].name

    def variants(self) -> list[str]:
        """The rendition playlists the master lists (its URI lines), as names under ``root``."""
        return [line.strip() for line in self.master.read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def summary(self) -> list[str]:
        """One line per directory: the edges that answered and the cache statuses they reported."""
        groups: dict[str, list[EdgeAnswer]] = {}
        for a in self.answers:
            groups.setdefault(posixpath.dirname(a.name) or ".", []).append(a)
        lines = []
        for folder, answers in groups.items():
            edges = ", ".join(sorted({a.edge or "?" for a in answers}))
            counts = sorted(Counter(a.cache or "-" for a in answers).items())
            caches = ", ".join(f"{n} {status}" for status, n in counts)
            names = answers[0].name if len(answers) == 1 else f"{folder}/ ({len(answers)} files)"
            lines.append(f"{names:<28} via {edges}: {caches}")
        return lines


def _name_under(root_url: str, url: str) -> str | None:
    """``url``'s path relative to the master's directory; None if it is elsewhere (another host or prefix)."""
    root, target = urlsplit(root_url), urlsplit(url)
    if (target.scheme, target.netloc) != (root.scheme, root.netloc):
        return None
    base = posixpath.dirname(root.path) + "/"
    path = posixpath.normpath(target.path)
    return path[len(base):] if path.startswith(base) and ".." not in path[len(base):].split("/") else None


def download_hls(manifest_url: str, dest: Path, *, client: httpx.Client | None = None) -> EdgeDownload:
    """Fetch the master at ``manifest_url``, every playlist it leads to and all their segments into ``dest``."""
    own = client is None
    http = client or httpx.Client(timeout=REQUEST_TIMEOUT)
    result = EdgeDownload(dest)
    queue, seen = [manifest_url], set()
    try:
        while queue:
            url = queue.pop(0)
            name = _name_under(manifest_url, url)
            if name is None or url in seen:
                continue
            seen.add(url)
            r = http.get(url)
            r.raise_for_status()
            local = dest / name
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(r.content)
            result.answers.append(EdgeAnswer(name, r.headers.get("X-Edge", ""), r.headers.get("X-Cache-Status", ""),
                                             len(r.content)))
            if is_media_playlist(name):
                queue += [urljoin(url, uri) for uri in playlist_uris(r.text)]
    finally:
        if own:
            http.close()
    return result
