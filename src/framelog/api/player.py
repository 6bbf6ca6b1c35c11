"""The web player: ``GET /player/{video_id}`` and its static files.

The page (web/player.html) carries its settings as JSON built here from the
configuration (the seed's ABR thresholds through ``processors.abr.js_constants``,
the reporting cadence from ``player``), so the JavaScript repeats no number.
Its scripts are served from web/ and hls.js from node_modules (installed by
``npm ci`` in scripts/bootstrap.sh); nothing comes from a CDN. What to play is
asked by the page itself from ``GET /v1/stream`` with the page's own query
(a share token, for instance), so access is decided there, not here.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse, Response

from framelog.api.auth import current_principal
from framelog.api.errors import responses
from framelog.api.services import Svc
from framelog.core.config import AbrConfig, PlayerConfig, QualityLevel
from framelog.core.errors import ApiError
from framelog.core.ids import validate_video_id
from framelog.processors.abr import js_constants

router = APIRouter(tags=["player"], dependencies=[Depends(current_principal)])     # who is asking: api.auth

REPO_ROOT = Path(__file__).resolve().parents[3]     # the checkout: web/ and node_modules/ sit there
WEB_DIR = REPO_ROOT / "web"
HLS_JS = REPO_ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.mjs"
VENDOR = {                           # npm packages the pages import, served from node_modules (no CDN)
    "hls.mjs": (HLS_JS, "text/javascript"),
    "uplot.mjs": (REPO_ROOT / "node_modules" / "uplot" / "dist" / "uPlot.esm.js", "text/javascript"),
    "uplot.css": (REPO_ROOT / "node_modules" / "uplot" / "dist" / "uPlot.min.css", "text/css"),
}
ASSETS_PATH = "/player/assets"
STREAM_PATH = "/v1/stream"
EVENTS_PATH = "/v1/events"
KEYS_PATH = "/v1/keys/"
ASSET_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}
NO_CACHE = {"Cache-Control": "no-cache"}     # revalidated (ETag) so a new deploy shows at once


@dataclass(frozen=True)
class PlayerPageSettings:
    """The sections the player's page reads (``Services.player_page``): the ABR thresholds (``config.abr``),
    the ladder they are scaled to (``config.hls.quality_levels``) and the reporting cadence (``config.player``)."""
    abr: AbrConfig
    quality_levels: tuple[QualityLevel, ...]
    player: PlayerConfig


def player_settings(settings: PlayerPageSettings, video_id: str) -> dict:
    """The JSON the page reads: endpoints, ABR constants and the reporting cadence."""
    return {
        "videoId": video_id,
        "streamEndpoint": STREAM_PATH,
        "eventsEndpoint": EVENTS_PATH,
        "keyPath": KEYS_PATH,
        "abr": js_constants(settings.abr, settings.quality_levels),
        "heartbeatMs": int(settings.player.heartbeat_interval * 1000),
        "eventFlushMs": int(settings.player.event_flush_interval * 1000),
        "eventBatchMax": settings.player.event_batch_max,
    }


def render_template(name: str, settings: dict, title: str) -> str:
    """A page of web/ with its settings JSON, the assets path and the (escaped) title filled in."""
    text = json.dumps(settings)
    # inside <script> only "</" could end the element early
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = (WEB_DIR / name).read_text()
    return (page.replace("{{CONFIG_JSON}}", text).replace("{{ASSETS}}", ASSETS_PATH)
            .replace("{{TITLE}}", html.escape(title)))


def render_page(settings: PlayerPageSettings, video_id: str) -> str:
    return render_template("player.html", player_settings(settings, video_id), video_id)


@router.get("/player/{video_id}", response_class=HTMLResponse, responses=responses(400, 401))
async def player_page(video_id: str, svc: Svc) -> Response:
    """The web player's page for one video (what to play it asks GET /v1/stream itself)."""
    validate_video_id(video_id)
    return HTMLResponse(render_page(svc.player_page, video_id), headers=NO_CACHE)


ASSET: dict[int | str, dict[str, Any]] = {200: {"content": {"text/javascript": {}, "text/css": {}},
                                                "description": "the file"}}


@router.get(ASSETS_PATH + "/vendor/{name}", response_class=FileResponse, responses={**ASSET, **responses(404, 503)})
async def vendor(name: str) -> Response:
    """hls.js for the player, uPlot for the analytics page: from node_modules, installed by npm ci (no CDN)."""
    if name not in VENDOR:
        raise ApiError(404, f"no vendor asset {name!r}")
    path, media_type = VENDOR[name]
    if not path.is_file():
        raise ApiError(503, f"{path.relative_to(REPO_ROOT)} is not installed; run scripts/bootstrap.sh (npm ci)",
                       code="not_installed")
    return FileResponse(path, media_type=media_type, headers=NO_CACHE)


@router.get(ASSETS_PATH + "/{name}", response_class=FileResponse, responses={**ASSET, **responses(404)})
async def asset(name: str) -> Response:
    """A script or style sheet of web/ (no sub-folders: nothing else is reachable)."""
    path = WEB_DIR / name
    media_type = ASSET_TYPES.get(path.suffix)
    if media_type is None or "/" in name or name.startswith(".") or not path.is_file():
        raise ApiError(404, f"no asset {name!r}")
    return FileResponse(path, media_type=media_type, headers=NO_CACHE)
