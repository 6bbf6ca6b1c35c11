"""The HTTP API: one FastAPI app assembled from one router per concern, and the operator listener.

    framelog api            # both listeners: the public API on stack.api_port, the operator one beside it

The public app serves no /metrics, /docs or /openapi.json: those are on the
operator app (``create_ops_app``), which ``framelog api`` binds to
``auth.ops_host`` (127.0.0.1 by default) on ``Config.ops_port``. It has no
token check of its own: keep it on a private interface.
"""
from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from framelog import __version__
from framelog.core.config import Config, get_config


def create_app(config: Config | None = None) -> FastAPI:
    from framelog.streams.kafka_auth import API, as_principal

    config = as_principal(config or get_config(), API)     # the API's own Kafka principal (streams/acls.py)
    app = FastAPI(title="framelog", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config

    from framelog.api import analytics, auth, events, keys, videos

    app.include_router(auth.router)
    app.include_router(videos.router)
    app.include_router(events.router)
    app.include_router(analytics.router)
    app.include_router(keys.router)

    from framelog.api import player, studio, upload_page
    app.include_router(player.router)
    app.include_router(upload_page.router)
    app.include_router(studio.router)

    from framelog.api import access, deletion, stream
    app.include_router(access.router)
    app.include_router(stream.router)
    app.include_router(deletion.router)

    from framelog.api import live, webhooks
    app.include_router(webhooks.router)
    app.include_router(live.router)

    from framelog.pipeline.agents.metrics import register_queue_size
    try:
        register_queue_size(config)
    except ValueError:           # already registered by an earlier app in this process (tests)
        pass

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:      # on the event loop: no engine, no thread pool to wait for
        return {"status": "ok"}

    from framelog.api.protection import ApiProtection
    app.add_middleware(ApiProtection, config=config)   # per-client limits before any route runs
    add_cors(app, config)                              # outermost: a 429 carries CORS headers too
    return app


def add_cors(app: FastAPI, config: Config) -> None:
    """Browser pages of ``cors.allowed_origins`` may call the API (a tus upload from another site):
    tus request headers allowed, its response headers exposed. None by default; bearer tokens, not
    cookies, so no credentials mode."""
    from fastapi.middleware.cors import CORSMiddleware

    from framelog.api.upload_protocol import METHODS, REQUEST_HEADERS, RESPONSE_HEADERS

    origins = list(config.cors.allowed_origins)
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=list(METHODS),
                       allow_headers=list(REQUEST_HEADERS), expose_headers=list(RESPONSE_HEADERS),
                       allow_credentials=False, max_age=int(config.cors.max_age))


def create_ops_app(public: FastAPI) -> FastAPI:
    """The operator listener: Prometheus /metrics, and the public app's OpenAPI document and docs."""
    ops = FastAPI(title="framelog operator", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    @ops.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @ops.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(public.openapi())

    @ops.get("/docs")
    def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="framelog API")

    @ops.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return ops
