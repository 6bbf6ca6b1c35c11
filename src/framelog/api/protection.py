"""Per-client request and connection limits for the whole API (issue 16: the seed's DDoS protection
and bot management, at the API as the edges do at nginx).

Every request but ``/healthz`` takes a token from its client address's bucket
(``api_protection.requests_per_second`` / ``burst``) and holds one of the
address's ``max_concurrent_per_client`` slots while it runs; over either limit
the answer is 429 with ``Retry-After`` before any route runs. The client
address is the peer, or behind a trusted proxy (``playback_trust.trusted_proxies``)
the right-most untrusted ``X-Forwarded-For`` hop (api.event_trust). The
process-wide connection ceiling is uvicorn's ``limit_concurrency``
(``max_concurrent_requests``, 503 past it), set by ``framelog api``.
Buckets live in this process, like the playback rate limits.
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from framelog.api.event_trust import RateLimiter, client_address, parse_networks, retry_after
from framelog.core.config import ApiProtectionConfig, PlaybackTrustConfig
from framelog.core.errors import ApiError

EXEMPT_PATHS = frozenset({"/healthz"})
Scope = dict[str, Any]
Asgi = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class ApiProtection:
    """ASGI middleware: per-client token bucket and in-flight cap, 429 past either."""

    def __init__(self, app: Asgi, protection: ApiProtectionConfig, trust: PlaybackTrustConfig):
        """``protection``: ``config.api_protection``; ``trust``: ``config.playback_trust`` (its trusted proxies
        and the buckets' bound, shared with the playback rate limits)."""
        self.app = app
        p = protection
        self.limiter = RateLimiter(p.requests_per_second, p.burst, trust.rate_limit_entries)
        self.max_in_flight = p.max_concurrent_per_client
        self.trusted = parse_networks(trust.trusted_proxies)
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _client(self, scope: Scope) -> str:
        peer = scope.get("client")
        forwarded = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"), None)
        return client_address(peer[0] if peer else None, forwarded, self.trusted)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        client = self._client(scope)
        wait = self.limiter.take(client)
        if wait:
            await _refuse(send, "too many requests from this client address", retry_after(wait))
            return
        with self._lock:
            busy = self._in_flight[client] >= self.max_in_flight
            if not busy:
                self._in_flight[client] += 1
        if busy:
            await _refuse(send, "too many requests in progress from this client address", "1")
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self._in_flight[client] -= 1
                if self._in_flight[client] <= 0:
                    del self._in_flight[client]


async def _refuse(send: Any, message: str, retry: str) -> None:
    body = json.dumps(ApiError(429, message, code="rate_limited").body()).encode()   # api.errors' shape
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", retry.encode()),
                            (b"cache-control", b"no-store"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
