"""The routes of a FastAPI app, those of included routers too (FastAPI may keep them behind the router)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.routing import APIRoute


def routes(app: Any) -> list[APIRoute]:
    def walk(items: Iterable[Any]) -> Iterator[APIRoute]:
        for r in items:
            if isinstance(r, APIRoute):
                yield r
            elif hasattr(r, "original_router"):
                yield from walk(r.original_router.routes)
            elif hasattr(r, "routes"):
                yield from walk(r.routes)
    return list(walk(app.router.routes))
