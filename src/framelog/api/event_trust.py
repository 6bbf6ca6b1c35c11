"""How far the API believes a playback client (config ``playback_trust``).

Who is asking
    The client address is the direct peer, unless that peer is one of
    ``trusted_proxies`` (CIDRs): then it is the right-most address of
    ``X-Forwarded-For`` that is not itself a trusted proxy. The viewer's
    country (``X-Viewer-Country``, set by the edge/CDN) is read only from a
    trusted peer; from anyone else the header is ignored. By default no proxy
    is trusted, so headers a client sets say nothing.

Playback sessions
    ``GET /v1/stream`` issues a signed session (``processors.playback_session``)
    that the player sends with every event batch, as the ``X-Playback-Session``
    header or the body's ``"session"`` field (``navigator.sendBeacon`` cannot
    set headers). Server-side producers may instead hold a token with the
    ``events:write`` scope (:func:`producer_authorized`, ``api.auth``).

Rate limits
    Token buckets: requests per client address (``client_rate`` /
    ``client_burst``, for ``POST /v1/events`` and ``GET|POST /v1/stream*``)
    and events per playback session (``session_rate`` / ``session_burst``).
    A refusal is 429 with ``Retry-After``. Buckets live in this process (a
    replica limits what reaches it; a load balancer spreading one client over
    N replicas lets N times through), at most ``rate_limit_entries`` per kind.
"""
from __future__ import annotations

import collections
import ipaddress
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from framelog.api.auth import principal_of
from framelog.core.config import PlaybackTrustConfig
from framelog.processors.identity import EVENTS_WRITE

FORWARDED_FOR_HEADER = "X-Forwarded-For"
COUNTRY_HEADER = "X-Viewer-Country"
SESSION_HEADER = "X-Playback-Session"
SESSION_FIELD = "session"                 # the same, in a JSON body ({"session": ..., "events": [...]})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# ------------------------------------------------------------ rate limits

class RateLimiter:
    """Token buckets keyed by a string (client address, session id), least recently used dropped past ``size``."""

    def __init__(self, rate: float, burst: int, size: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.size, self.clock = float(rate), int(burst), int(size), clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, n: int = 1) -> float:
        """0 when ``n`` tokens were taken from ``key``'s bucket, else the seconds until they would be there.

        A request for more than the burst takes the whole (full) bucket: a batch
        is never refused for its size alone, the next one waits longer.
        """
        n = min(max(n, 1), self.burst)
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= n:
                tokens -= n
                wait = 0.0
            else:
                wait = (n - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> str:
    """``Retry-After`` in whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))


# ------------------------------------------------------------ proxies

def parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:              # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:                             # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in(addr: Any, networks: tuple[Network, ...]) -> bool:
    return addr is not None and any(addr in n for n in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, or (peer trusted) the right-most untrusted hop of X-Forwarded-For."""
    peer = peer or "unknown"
    if not _in(_address(peer), trusted) or not forwarded_for:
        return peer
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        addr = _address(hop)
        if addr is None:
            return peer                                    # a garbled chain: believe only the peer
        if not _in(addr, trusted):
            return str(addr)
    return peer


_COUNTRY = re.compile(r"^[A-Z]{2}$")


def viewer_country(value: str | None) -> str | None:
    """The edge's country header: ISO 3166-1 alpha-2, two upper-case letters; else (and the CDNs' 'XX') None."""
    if value is None:
        return None
    value = value.strip()
    return value if _COUNTRY.match(value) and value != "XX" else None


# ------------------------------------------------------------ one app's trust state

@dataclass
class EventTrust:
    """The trusted networks and the rate limiters of one app (``Services.trust``)."""
    settings: PlaybackTrustConfig
    secret: bytes                         # verifies playback sessions
    trusted: tuple[Network, ...]
    clients: RateLimiter
    sessions: RateLimiter
    views: ViewClaims

    @classmethod
    def from_settings(cls, settings: PlaybackTrustConfig, secret: bytes) -> EventTrust:
        """``settings``: ``config.playback_trust``; ``secret``: the API's token secret (``Services.secret``,
        ``processors.tokens.load_or_create_secret``), which verifies playback sessions."""
        s = settings
        return cls(s, secret, parse_networks(s.trusted_proxies),
                   RateLimiter(s.client_rate, s.client_burst, s.rate_limit_entries),
                   RateLimiter(s.session_rate, s.session_burst, s.rate_limit_entries),
                   ViewClaims(s.rate_limit_entries))

    def peer_trusted(self, request: Request) -> bool:
        return _in(_address(request.client.host if request.client else ""), self.trusted)

    def client(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers.get(FORWARDED_FOR_HEADER), self.trusted)

    def country(self, request: Request) -> str | None:
        """The edge's country header, from a trusted proxy only."""
        return viewer_country(request.headers.get(COUNTRY_HEADER)) if self.peer_trusted(request) else None

    def client_wait(self, request: Request) -> float:
        return self.clients.take(self.client(request))


class ViewClaims:
    """Sessions whose start the client itself reported (the stream API could not): one view each."""

    def __init__(self, size: int):
        self.size = size
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def claim(self, session_id: str) -> bool:
        with self._lock:
            if session_id in self._seen:
                return False
            self._seen[session_id] = None
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True

    def release(self, session_id: str) -> None:
        with self._lock:
            self._seen.pop(session_id, None)


# ------------------------------------------------------------ server-side producers

def producer_authorized(request: Request) -> bool:
    """Does the request carry a token with the ``events:write`` scope (a server-side producer)?

    A token that does not verify is a 401 (``api.auth``), never a silent
    downgrade; a valid one without the scope is no producer (its events need
    a session like anyone's).
    """
    principal = principal_of(request)
    return principal is not None and principal.has(EVENTS_WRITE)
