"""The creator upload page: ``GET /upload`` and its bundle.

Uppy (Dashboard + its tus plugin) against this API's tus endpoint, from npm,
bundled into web/dist/ by ``scripts/build_web.mjs`` (run by scripts/bootstrap.sh)
and served from here: nothing comes from a CDN. The page holds no credential:
the creator pastes a token with ``videos:write`` (or opens ``/upload#token=…``),
which the page sends as a bearer token on every tus request and status poll.
Its settings (endpoint, size limit, poll interval) come from the configuration.
"""
from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from framelog.api.auth import current_principal
from framelog.core.config import Config

router = APIRouter(tags=["upload page"], dependencies=[Depends(current_principal)])

REPO_ROOT = Path(__file__).resolve().parents[3]     # the checkout: web/ sits there
PAGE = REPO_ROOT / "web" / "upload" / "upload.html"
BUNDLE_DIR = REPO_ROOT / "web" / "dist"
ASSETS_PATH = "/upload/assets"
ASSETS = {"upload.js": "text/javascript", "upload.css": "text/css"}
NO_CACHE = {"Cache-Control": "no-cache"}


def page_settings(config: Config) -> dict[str, object]:
    return {"endpoint": "/videos", "statusPath": "/videos/", "maxSize": config.upload_limits.max_size,
            "statusPollMs": int(config.upload_limits.page_status_poll * 1000)}


def render_page(config: Config) -> str:
    settings = json.dumps(page_settings(config))
    settings = settings.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return PAGE.read_text().replace("{{CONFIG_JSON}}", settings).replace("{{ASSETS}}", ASSETS_PATH)


@router.get("/upload", response_class=HTMLResponse)
async def upload_page(request: Request) -> Response:
    return HTMLResponse(render_page(request.app.state.config), headers=NO_CACHE)


@router.get(ASSETS_PATH + "/{name}")
async def upload_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        return JSONResponse({"error": f"no asset {name!r}"}, status_code=404)
    path = BUNDLE_DIR / name
    if not path.is_file():
        return JSONResponse({"error": "the upload page is not built; run scripts/bootstrap.sh "
                                      "(node scripts/build_web.mjs)"}, status_code=503)
    return FileResponse(path, media_type=media_type, headers=NO_CACHE)
