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
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse, Response

from framelog.api.auth import current_principal
from framelog.api.errors import responses
from framelog.api.services import Svc
from framelog.core.config import UploadLimits
from framelog.core.errors import ApiError

router = APIRouter(tags=["upload page"], dependencies=[Depends(current_principal)])

REPO_ROOT = Path(__file__).resolve().parents[3]     # the checkout: web/ sits there
PAGE = REPO_ROOT / "web" / "upload" / "upload.html"
BUNDLE_DIR = REPO_ROOT / "web" / "dist"
ASSETS_PATH = "/upload/assets"
ASSETS = {"upload.js": "text/javascript", "upload.css": "text/css"}
NO_CACHE = {"Cache-Control": "no-cache"}


def page_settings(limits: UploadLimits) -> dict[str, object]:
    """The JSON the page reads: the tus endpoint, the size limit and the status poll (``config.upload_limits``)."""
    return {"endpoint": "/videos", "statusPath": "/videos/", "maxSize": limits.max_size,
            "statusPollMs": int(limits.page_status_poll * 1000)}


def render_page(limits: UploadLimits) -> str:
    settings = json.dumps(page_settings(limits))
    settings = settings.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return PAGE.read_text().replace("{{CONFIG_JSON}}", settings).replace("{{ASSETS}}", ASSETS_PATH)


@router.get("/upload", response_class=HTMLResponse, responses=responses(401))
async def upload_page(svc: Svc) -> Response:
    """The creator upload page (Uppy against the tus endpoint; the creator's token is pasted in the page)."""
    return HTMLResponse(render_page(svc.uploads.settings.upload_limits), headers=NO_CACHE)


ASSET: dict[int | str, dict[str, Any]] = {200: {"content": {"text/javascript": {}, "text/css": {}},
                                                "description": "the page's bundle"}}


@router.get(ASSETS_PATH + "/{name}", response_class=FileResponse, responses={**ASSET, **responses(404, 503)})
async def upload_asset(name: str) -> Response:
    """The upload page's script or style (web/dist, built by scripts/build_web.mjs)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, f"no asset {name!r}")
    path = BUNDLE_DIR / name
    if not path.is_file():
        raise ApiError(503, "the upload page is not built; run scripts/bootstrap.sh (node scripts/build_web.mjs)",
                       code="not_installed")
    return FileResponse(path, media_type=media_type, headers=NO_CACHE)
