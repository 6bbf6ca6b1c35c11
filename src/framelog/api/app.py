"""The HTTP API: one FastAPI app assembled from one router per concern, and the operator listener.

    framelog api            # both listeners: the public API on stack.api_port, the operator one beside it

Every app is put together by ``assemble``: its routers, the lifespan that
builds the app's one ``Services`` object (``api.services``: handed to routes
by ``Depends``) and closes it at shutdown, and the one exception handler
(``api.errors``: every refusal as ``{"error": {"code", "message", ...}}``).
``create_app`` is the whole public API; tests assemble the routers they need.

The public app serves no /metrics, /docs or /openapi.json: those are on the
operator app (``create_ops_app``), which ``framelog api`` binds to
``auth.ops_host`` (127.0.0.1 by default) on ``Config.ops_port``. It has no
token check of its own: keep it on a private interface. Its /docs page is
Swagger UI served from node_modules/swagger-ui-dist (``npm ci``), no CDN.
"""
from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from framelog import __version__
from framelog.api.errors import document_errors, install_error_handlers
from framelog.api.services import STATE_KEY, open_services
from framelog.core.config import Config, get_config
from framelog.core.errors import ApiError

# what the lifespan starts at once, so the first request rarely waits for a replay (the rest: on first use)
WARM = ("sender", "catalog", "tier_view", "status")
REPO_ROOT = Path(__file__).resolve().parents[3]                 # the checkout: node_modules/ sits there
SWAGGER_DIST = REPO_ROOT / "node_modules" / "swagger-ui-dist"
DOCS_ASSETS = "/docs/assets"
DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
              "favicon-32x32.png": "image/png"}


def routers() -> list[APIRouter]:
    """Every router of the public API."""
    from framelog.api import (
        access,
        analytics,
        auth,
        deletion,
        events,
        keys,
        live,
        player,
        stream,
        studio,
        upload_page,
        videos,
        webhooks,
    )
    return [m.router for m in (auth, videos, events, analytics, keys, player, upload_page, studio, access, stream,
                               deletion, webhooks, live)]


def assemble(config: Config, include: Iterable[APIRouter], *, warm: Sequence[str] = WARM,
             ingest: Any = None) -> FastAPI:
    """An app of these routers with the API's lifespan (its ``Services``) and its one error handler.

    ``warm``: the parts of ``Services`` started with the app (``api.services.PARTS``);
    ``ingest``: other ``IngestSettings`` for ``POST /v1/events`` (tests).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_services(config, warm=warm, ingest=ingest) as svc:
            yield {STATE_KEY: svc}         # request.state.services, for api.services.services

    app = FastAPI(title="framelog", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan, description=API_DESCRIPTION)
    for router in include:
        app.include_router(router)
    install_error_handlers(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi                                  # type: ignore[method-assign]
    return app


def create_app(config: Config | None = None, *, warm: Sequence[str] | None = None) -> FastAPI:
    """The public API (``warm``: what to start with it; default ``WARM`` and the analytics engine)."""
    from framelog.streams.kafka_auth import API, as_principal

    config = config or get_config()
    # the API's own Kafka principal (streams/acls.py)
    config = dataclasses.replace(config, kafka=as_principal(config.kafka, API))
    if warm is None:
        from framelog.api.analytics_engine import engine_elsewhere

        warm = WARM if engine_elsewhere(config.clickhouse_dsn) else (*WARM, "analytics")
    app = assemble(config, routers(), warm=warm)

    from framelog.pipeline.agents.metrics import register_queue_size
    try:
        register_queue_size(config.streams)
    except ValueError:           # already registered by an earlier app in this process (tests)
        pass

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz() -> dict[str, str]:      # on the event loop: no engine, no thread pool to wait for
        """Liveness for load balancers (no credentials, no services touched)."""
        return {"status": "ok"}

    from framelog.api.body_limit import BodyLimit
    from framelog.api.protection import ApiProtection
    # bodies read whole are capped before any route reads one; per-client limits before any route runs
    app.add_middleware(BodyLimit, protection=config.api_protection)
    app.add_middleware(ApiProtection, protection=config.api_protection, trust=config.playback_trust)
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


class Health(BaseModel):
    status: str


def create_ops_app(public: FastAPI) -> FastAPI:
    """The operator listener: Prometheus /metrics, and the public app's OpenAPI document and docs."""
    ops = FastAPI(title="framelog operator", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(ops)

    @ops.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @ops.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(public.openapi())

    @ops.get("/docs")
    def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="framelog API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")

    @ops.get(DOCS_ASSETS + "/{name}")
    def docs_asset(name: str) -> Response:
        """Swagger UI's files from node_modules/swagger-ui-dist (nothing else there is reachable)."""
        media_type = DOCS_FILES.get(name)
        if media_type is None:
            raise ApiError(404, f"no docs asset {name!r}")
        path = SWAGGER_DIST / name
        if not path.is_file():
            raise ApiError(503, "swagger-ui-dist is not installed; run scripts/bootstrap.sh (npm ci)",
                           code="not_installed")
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    @ops.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return ops


API_DESCRIPTION = """\
framelog's public API: resumable uploads (tus 1.0), status and live progress, playback
(`GET /v1/stream`, keys, the web player), playback events, analytics, access policies and
share links, deletion, webhooks.

**Credentials.** `Authorization: Bearer <JWT>` (framelog's own, or a trusted issuer's; mint one with
`framelog token mint`). A token that does not verify is always 401, never a downgrade to anonymous.

**Errors.** Every answer other than success has one body shape:

    {"error": {"code": "session_expired", "message": "the playback session expired; ...", ...}}

`code` is a stable word for programs, `message` a sentence for people; further fields name what was
refused (`event_index` and `field` for a playback batch, `field` for a bad parameter,
`availability`/`restore_estimate_seconds` for a rendition being restored, `status` for a video not
playable yet, `retryable`). `Retry-After` comes with 429 and 503.
"""
