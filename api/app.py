"""The HTTP API: one FastAPI app assembled from one router per concern.

    uvicorn framelog.api.app:create_app --factory --port 18000
or  framelog api
"""
from __future__ import annotations

from fastapi import FastAPI

from framelog import __version__
from framelog.config import Config, get_config


def create_app(config: Config | None = None) -> FastAPI:
    config = config or get_config()
    app = FastAPI(title="framelog", version=__version__)
    app.state.config = config

    from framelog.api import events, videos

    app.include_router(videos.router)
    app.include_router(events.router)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
