"""A cap on the request bodies FastAPI reads whole (routes with a declared JSON model).

FastAPI reads and parses a route's body before its dependencies run, so
without a cap a client with no credentials could make the API hold any
amount of JSON before the token check answers 401. This middleware reads at
most ``api_protection.max_json_body`` bytes of a body (by ``Content-Length``,
or counted as it arrives) and answers 413 in the API's error shape past it.
The routes that stream their bodies with limits of their own are left alone:
tus uploads (``/videos/{id}/upload``) and ``POST /v1/events``.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from framelog.core.config import ApiProtectionConfig
from framelog.core.errors import ApiError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
STREAMING = ("/v1/events",)             # exact paths that stream their own bodies
STREAMING_SUFFIX = "/upload"            # tus: /videos/{id}/upload


def streams_its_body(path: str) -> bool:
    return path in STREAMING or path.endswith(STREAMING_SUFFIX)


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_json_body`` bytes, before any route reads it."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], protection: ApiProtectionConfig):
        self.app = app
        self.limit = protection.max_json_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or streams_its_body(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        messages: list[dict[str, Any]] = []
        size = 0
        while True:                      # read the (capped) body now, hand it to the app as it came
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        error = ApiError(413, f"the request body exceeds {self.limit} bytes", code="too_large")
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
