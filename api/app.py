"""The HTTP API: one FastAPI app assembled from one router per concern.

    uvicorn framelog.api.app:create_app --factory --port 18000
or  framelog api
"""
from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from framelog import __version__
from framelog.config import Config, get_config


def create_app(config: Config | None = None) -> FastAPI:
    config = config or get_config()
    app = FastAPI(title="framelog", version=__version__)
    app.state.config = config

    from framelog.api import analytics, events, keys, videos

    app.include_router(videos.router)
    app.include_router(events.router)
    app.include_router(analytics.router)
    app.include_router(keys.router)

    from framelog.api import player
    app.include_router(player.router)

    from framelog.api import access, deletion, stream
    app.include_router(access.router)
    app.include_router(stream.router)
    app.include_router(deletion.router)

    from framelog.streams.agents.metrics import register_queue_size
    try:
        register_queue_size(config)
    except ValueError:           # already registered by an earlier app in this process (tests)
        pass

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:      # on the event loop: no engine, no thread pool to wait for
        return {"status": "ok"}

    return app
