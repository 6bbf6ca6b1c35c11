"""``GET /v1/stream``: where and how to play a video (the seed's StreamingService.GetStreamURL).

    GET /v1/stream?video_id=&quality=&share=&country=
        Authorization: Bearer <token>           (optional: anonymous without it; api.auth)
        X-Viewer-Country: US                    (the edge's header, believed from a trusted proxy only
                                                 (``playback_trust.trusted_proxies``); ``country=`` overrides
                                                 it for routing only: analytics record the trusted country)

    POST /v1/stream/renew   {"session": <playback session>}  (or header X-Playback-Session)
        Authorization: Bearer <token>           (when the session was opened by a signed-in viewer)

Checks, in this order (each refusal says why, never cacheable):
400 missing or malformed ``video_id``; 401 a token that does not
verify; 404 unknown or deleted video; 403 no access (``share`` refused:
forged, expired, revoked, another video's; or the video is private); 409 not
playable yet, with the status from the stage-transition log (uploading,
processing, failed); 400 a malformed or unknown quality name, 404 a quality
that was not published; 409 a requested rendition being restored from a cold
tier (with the estimate).

Answer (200, ``Cache-Control: no-store``):

* ``stream_url`` / ``manifest_url``: signed edge URLs (signature in the path,
  checked by the edge) on the primary edge chosen for the viewer's country,
  the primary swapped for the fallback when its health probe fails;
  ``stream_url`` is the requested rendition's playlist, or the master;
  ``fallback`` holds the same two on the other edge.
* ``download_url``: the progressive MP4 the pipeline published, at the seed's
  CDN path (``videos/<yyyy>/<mm>/<quality>/<id>.mp4``, dated by the upload as
  the published asset names it), signed like the rest (null if none was
  published); ``fallback.download_url`` is the same on the other edge.
* ``qualities``: the renditions actually published (``AssetPublished``),
  with their playlist URLs and availability; ``subtitles`` (published tracks,
  if any), ``chapters_url``, ``poster_url``, ``duration_seconds``.
* ``encryption``: the key URI and the signed ``grant`` the player appends to
  every key request (bound to the viewer and/or share link it was issued
  for; see ``api.keys``).
* ``analytics``: where and how the player reports (``ingest_url``, the
  ``session_id``/``viewer_id`` to put on its events, the id of the
  ``view_start`` this request already emitted -- the player must not send a
  second one for the session).
* ``session``: the signed playback session (``processors.playback_session``:
  video, viewer, trusted country, the basis access was granted on, expiry)
  the player sends with every event batch and with each renewal;
  ``renewal``: where to renew and after how many seconds.

Every URL and grant lives ``security.stream_url_ttl`` (minutes), or less:
never longer than the share token it was issued on. Before they expire the
player renews them: ``POST /v1/stream/renew`` checks the session, then access
again exactly as the key endpoint does (``video_access.key_access`` on the
session's basis: a revoked share link, a video made private or deleted, a
viewer token missing for a viewer-bound session: 403) and answers fresh
URLs, key grant and session (the same body without ``analytics``; no second
view_start). A refused renewal leaves the URLs already issued to run out,
so revocation takes effect within one ``stream_url_ttl``: the edges check
the expiry in the path on every request, cached or not.

Both endpoints count against the client address's rate limit (429).
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from framelog.api.access_state import AccessState, video_id_param
from framelog.api.auth import current_principal
from framelog.api.errors import responses
from framelog.api.event_trust import SESSION_FIELD, SESSION_HEADER, retry_after
from framelog.api.events import ParsedEvent, encode_events, playback_types
from framelog.api.keys import key_grant, key_url
from framelog.api.services import STATUS_READY_TIMEOUT, Services, Svc
from framelog.api.stream_availability import RESTORING, Availability, rendition_availability
from framelog.api.stream_models import RenewRequest, StreamAnswer, StreamRenewal
from framelog.core import object_keys
from framelog.core.config import (
    CdnConfig,
    DeliveryConfig,
    PlaybackTrustConfig,
    QualityLevel,
    SecurityConfig,
    StackConfig,
)
from framelog.core.errors import ApiError
from framelog.processors.access import Viewer
from framelog.processors.cdn_routing import Route, normalize_country, route
from framelog.processors.delivery_plan import DeliveryPlan, plan_for, plan_key
from framelog.processors.edge_signing import signed_edge_url
from framelog.processors.playback_session import PlaybackSession, issue_session, verify_session
from framelog.processors.preview import preview_renditions
from framelog.processors.tokens import ExpiredTokenError, TokenError
from framelog.processors.video_access import (
    AccessDecision,
    VideoEntry,
    grant_viewer,
    key_access,
    parse_grant_viewer,
    stream_access,
)
from framelog.schemas.events import new_event
from framelog.streams.topics import PLAYBACK_EVENTS

log = logging.getLogger(__name__)

router = APIRouter(tags=["stream"], dependencies=[Depends(current_principal)])     # who is asking: api.auth

AUTO_QUALITY = "auto"
STREAM_START_TYPE = "view_start"      # PlaybackEvent: "the player opened a playback session (stream requested)"
STREAM_START_TIMEOUT = 5.0            # how long the answer waits for the broker to acknowledge the view_start
NO_STORE = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
RENEW_PATH = "/v1/stream/renew"
RETRY_UNKNOWN_SECONDS = 60            # Retry-After of a restore with no estimate


@dataclass(frozen=True)
class StreamSettings:
    """The sections ``GET /v1/stream`` and its renewal read (``Services.stream_settings``): the ladder a
    ``quality=`` may name (``config.hls.quality_levels``), routing and the edges (``config.cdn``), the edges'
    host and the state dir of the key grant's secret (``config.stack``), URL lifetimes and signing
    (``config.security``), the public API's and keys' addresses (``config.delivery``) and the playback
    session's lifetime and renewal (``config.playback_trust``)."""
    quality_levels: tuple[QualityLevel, ...]
    cdn: CdnConfig
    stack: StackConfig
    security: SecurityConfig
    delivery: DeliveryConfig
    playback_trust: PlaybackTrustConfig


def _restoring(subject: str, estimate: float | None) -> ApiError:
    """409 for a rendition (or a whole video) being restored: says "restoring" and when to ask again.

    Retry-After is rounded up and at least 1 s: an estimate of 0 means "due now,
    the tiering worker is about to promote it", not "unknown".
    """
    retry = RETRY_UNKNOWN_SECONDS if estimate is None else max(1, math.ceil(estimate))
    return ApiError(409, f"{subject} is being restored from cold storage; ready in about {retry}s",
                    {"Retry-After": str(retry)}, code="restoring", availability=RESTORING,
                    restore_estimate_seconds=estimate)


def _quality_param(value: str | None, quality_levels: tuple[QualityLevel, ...]) -> str | None:
    """None for the adaptive master (absent or 'auto'); 400 for a malformed or unknown quality name
    (``quality_levels``: ``config.hls.quality_levels``)."""
    if value is None or value == "" or value == AUTO_QUALITY:
        return None
    ladder = [q.name for q in quality_levels]
    if value not in ladder:
        raise ApiError(400, f"unknown quality {value[:40]!r}; expected one of {[AUTO_QUALITY, *ladder]}",
                       code="invalid_field", field="quality")
    return value


def _not_playable(svc: Services, video_id: str) -> ApiError:
    """409 with the video's processing status (or what the upload says)."""
    table = svc.status
    view = None
    if table.ready or table.wait_ready(STATUS_READY_TIMEOUT):     # no 503 here: the 409 says what it knows
        view = table.get(video_id)
    if view is None:
        view = svc.uploads.status_view(video_id) or {"video_id": video_id, "state": "uploaded"}
    return ApiError(409, f"video {video_id} is not playable yet: {view.get('state')}", code="not_playable",
                    status=view)


def _share_ttl(share_expires_at: int | None, security: SecurityConfig, now: float) -> float:
    """URL lifetime: stream_url_ttl, never past the share link's own expiry."""
    ttl = security.stream_url_ttl
    if share_expires_at is not None:
        ttl = min(ttl, share_expires_at - now)
    return max(ttl, 1.0)


def _urls(provider: str, video_id: str, quality: str | None, settings: StreamSettings, secret: bytes, now: float,
          ttl: float) -> dict[str, str]:
    s = settings
    manifest = signed_edge_url(provider, object_keys.master_playlist(video_id), s.cdn, s.stack.host,
                               s.security, secret=secret, now=now, ttl=ttl)
    stream = manifest if quality is None else signed_edge_url(
        provider, object_keys.rendition_playlist(video_id, quality), s.cdn, s.stack.host, s.security,
        secret=secret, now=now, ttl=ttl)
    return {"provider": provider, "stream_url": stream, "manifest_url": manifest}


def _subtitles(plan: DeliveryPlan, sign: Callable[[str], str]) -> list[dict[str, Any]]:
    """Published subtitle tracks: ``playlist_url`` (also named by the master playlist's EXT-X-MEDIA,
    so hls.js finds it on its own) and ``vtt_url`` (the whole track, for a <track> element)."""
    return [{"language": t.language, "label": t.language or "captions", "kind": "captions",
             "playlist_url": sign(t.playlist_path) if t.playlist_path else None,
             "vtt_url": sign(t.vtt_path) if t.vtt_path else None} for t in plan.subtitles]


def _plan(svc: Services, video_id: str, asset: dict[str, Any]) -> DeliveryPlan:
    """The video's delivery plan, from the application cache (dropped when the catalog folds its events)."""
    return svc.delivery_plans.get_or_compute(plan_key(video_id, asset), lambda: plan_for(video_id, asset),
                                               (video_id,))


async def _emit_stream_start(svc: Services, video_id: str, viewer: Viewer | None, quality: str | None,
                             country: str | None) -> dict[str, Any]:
    """The seed's TrackStreamStart: a view_start PlaybackEvent on playback.events (acks=all)."""
    session_id = uuid.uuid4().hex
    viewer_id = viewer.user_id if viewer is not None else f"anon-{session_id}"
    now_ms = time.time_ns() // 1_000_000
    record = new_event("PlaybackEvent", session_id=session_id, viewer_id=viewer_id, video_id=video_id,
                       type=STREAM_START_TYPE, rendition=quality, country=country, device=None,
                       client_time=now_ms, ingest_time=now_ms, event_time=now_ms)
    recorded = True
    try:
        sender = svc.sender
        encoded = await run_in_threadpool(encode_events, sender.producer,
                                          [ParsedEvent(PLAYBACK_EVENTS, "PlaybackEvent", record)])
        await sender.send_encoded(encoded, STREAM_START_TIMEOUT, "view_start")
    except Exception as exc:  # noqa: BLE001 - analytics trouble must not stop playback
        log.warning("stream start of %s not recorded: %s", video_id, exc)
        recorded = False
    return {"session_id": session_id, "viewer_id": viewer_id, "event_id": record["event_id"], "recorded": recorded}


def _ingest_url(svc: Services, request: Request) -> str:
    """Where the player posts its events: this API's ``POST /v1/events``."""
    return f"{_api_base(svc, request)}/v1/events"


def _api_base(svc: Services, request: Request) -> str:
    """The API's public base (``delivery.public_api_url``), else the one the client used."""
    return svc.stream_settings.delivery.public_api_url.rstrip("/") or str(request.base_url).rstrip("/")


def preview_asset(svc: Services, video_id: str) -> dict[str, Any] | None:
    """A provisional asset while the video is still processing (issue 13 pt 4): every rung whose leading
    chunks the stitch published with a growing EVENT playlist (lowest first, as the transcoding stage's
    ``preview_*`` outputs name them); None when there is none (or the video failed)."""
    table = svc.status
    if not (table.ready or table.wait_ready(STATUS_READY_TIMEOUT)):
        return None
    view = table.get(video_id)
    if not view or view.get("state") in ("failed", "deleted", "cancelled"):
        return None
    out = ((view.get("stages") or {}).get("transcoding") or {}).get("outputs") or {}
    listed = preview_renditions(out)
    if not out.get("preview_master_key") or not listed:
        return None
    frame_rate = float(out["preview_frame_rate"])
    renditions = [{"name": r["name"], "width": int(r["width"]), "height": int(r["height"]),
                   "bandwidth": int(r["bandwidth"]), "average_bandwidth": int(r["average_bandwidth"]),
                   "codecs": r["codecs"], "frame_rate": frame_rate,
                   "playlist_key": object_keys.rendition_playlist(video_id, r["name"])} for r in listed]
    growth = "-".join(f"{r['name']}.{r.get('chunks', '')}" for r in listed)    # a new plan on every growth
    return {"video_id": video_id, "job_id": f"preview-{view.get('job_id', '')}-{growth}",
            "renditions": renditions, "master_playlist_key": out["preview_master_key"],
            "duration_seconds": float(out.get("preview_duration") or 0.0), "thumbnails": [],
            "chapters_key": None, "key_id": out.get("preview_key_id") or None, "metadata": {"processing": "true"}}


def _resolve(svc: Services, request: Request, video_id: str, share: str | None
             ) -> tuple[Viewer | None, VideoEntry, AccessDecision, dict[str, Any]]:
    """Who asks, the video, the access decision and the asset to play: the published one, else the
    preview of a video still processing; 409 with the status when there is neither."""
    state = svc.access
    viewer = state.viewer(request)
    entry, policy = state.known_entry(video_id)
    decision = stream_access(entry, policy, viewer, share, secret=state.secret, now=time.time())
    if not decision.allowed:
        raise ApiError(403, decision.refusal, code="access_refused")
    asset = entry.asset or preview_asset(svc, video_id)
    if asset is None:
        raise _not_playable(svc, video_id)
    return viewer, entry, decision, asset


def _route(svc: Services, country: str | None) -> tuple[Route, dict[str, bool]]:
    health = svc.edge_health.healthy()
    return route(country, svc.stream_settings.cdn, lambda p: health.get(p, False)), health


def _check_rate(svc: Services, request: Request) -> None:
    """429 when the client address spent its requests (``playback_trust.client_rate``)."""
    wait = svc.trust.client_wait(request)
    if wait:
        raise ApiError(429, "too many requests from this client address", {"Retry-After": retry_after(wait)})


async def _delivery(request: Request, svc: Services, video_id: str, quality: str | None, plan: DeliveryPlan,
                    availability: dict[str, Availability], route_country: str | None,
                    grant_basis: str | None, viewer_bound: bool, share_expires_at: int | None) -> dict[str, Any]:
    """The signed part of an answer: edge URLs (primary and fallback), renditions, poster, key grant, expiry."""
    settings, state = svc.stream_settings, svc.access
    chosen, health = await run_in_threadpool(_route, svc, route_country)
    now = time.time()
    ttl = _share_ttl(share_expires_at, settings.security, now)
    primary = _urls(chosen.primary, video_id, quality, settings, state.secret, now, ttl)
    fallback = _urls(chosen.fallback, video_id, quality, settings, state.secret, now, ttl)

    def sign(key: str) -> str:
        return signed_edge_url(chosen.primary, key, settings.cdn, settings.stack.host, settings.security,
                               secret=state.secret, now=now, ttl=ttl)

    qualities = []
    for r in plan.renditions:
        a = availability.get(r["name"], Availability())
        qualities.append({"name": r["name"], "width": r.get("width"), "height": r.get("height"),
                          "bandwidth": r.get("bandwidth"), "average_bandwidth": r.get("average_bandwidth"),
                          "codecs": r.get("codecs"), "frame_rate": r.get("frame_rate"),
                          "playlist_url": sign(r["playlist_path"]), **a.to_dict()})
    encryption = None
    if plan.encrypted:
        # the key grant lives exactly as long as the edge URLs and is renewed with them
        grant = key_grant(settings.security, settings.stack, video_id, grant_basis, ttl=ttl)
        encryption = {"method": "AES-128", "key_uri": key_url(settings.delivery, settings.stack, video_id),
                      "grant": grant,
                      "grant_requires_viewer_token": viewer_bound}
    mp4 = plan.download_path
    fallback["download_url"] = None if mp4 is None else signed_edge_url(
        chosen.fallback, mp4, settings.cdn, settings.stack.host, settings.security, secret=state.secret, now=now,
        ttl=ttl)
    return {
        "video_id": video_id,
        "quality": quality or AUTO_QUALITY,
        "stream_url": primary["stream_url"],
        "manifest_url": primary["manifest_url"],
        "download_url": sign(mp4) if mp4 is not None else None,
        "fallback": fallback,
        "cdn": {"primary": chosen.primary, "fallback": chosen.fallback, "rule": chosen.rule,
                "failed_over": chosen.failed_over, "country": route_country, "health": health},
        "qualities": qualities,
        "subtitles": _subtitles(plan, sign),
        "chapters_url": sign(plan.chapters_path) if plan.chapters_path else None,
        "poster_url": sign(plan.poster_path) if plan.poster_path else None,
        "duration_seconds": plan.duration_seconds,
        "encryption": encryption,
        "expires_at": int(now + ttl),
        "renewal": {"url": f"{_api_base(svc, request)}{RENEW_PATH}",
                    "after_seconds": round(ttl * settings.playback_trust.renew_at_fraction, 3)},
    }


def _with_session(body: dict[str, Any], token: str, session: PlaybackSession) -> dict[str, Any]:
    body["session"] = token
    body["session_expires_at"] = session.expires_at
    return body


@router.get("/v1/stream", response_model=StreamAnswer, responses=responses(400, 401, 403, 404, 409, 429, 503))
async def get_stream(request: Request, svc: Svc,
                     video_id: str | None = Query(None, description="the video to play (required)"),
                     quality: str | None = Query(None, description="a rendition name, or auto (the default)"),
                     share: str | None = Query(None, description="a share token (POST /videos/{id}/share)"),
                     country: str | None = Query(None, description="ISO 3166-1 alpha-2; steers routing only")
                     ) -> JSONResponse:
    """Where and how to play a video: signed edge URLs, renditions, key grant, playback session."""
    state, settings = svc.access, svc.stream_settings
    _check_rate(svc, request)
    video_id = video_id_param(video_id)
    wanted = _quality_param(quality, settings.quality_levels)
    viewer, entry, decision, asset = await run_in_threadpool(_resolve, svc, request, video_id, share)
    plan = _plan(svc, video_id, asset)
    names = plan.names
    if wanted is not None and wanted not in names:
        raise ApiError(404, f"quality {wanted} was not published for video {video_id}; published: {names}")
    availability = await run_in_threadpool(rendition_availability, svc, video_id, names, wanted)
    if wanted is not None and not availability.get(wanted, Availability()).playable:
        raise _restoring(f"rendition {wanted}", availability[wanted].estimate_seconds)
    if wanted is None and availability and not any(a.playable for a in availability.values()):
        known = [a.estimate_seconds for a in availability.values() if a.estimate_seconds is not None]
        raise _restoring(f"video {video_id}", min(known) if known else None)

    # The viewer's country only from a trusted proxy's header; ``country=`` may steer
    # routing (tests, a viewer's declared region) but analytics record the trusted one.
    trusted_country = svc.trust.country(request)
    route_country = normalize_country(country) or trusted_country
    basis = grant_viewer(viewer, decision)
    share_exp = decision.share.expires_at if decision.share is not None else None
    body = await _delivery(request, svc, video_id, wanted, plan, availability, route_country, basis,
                           viewer is not None, share_exp)
    start = await _emit_stream_start(svc, video_id, viewer, wanted, trusted_country)
    token, session = issue_session(
        secret=state.secret, now=time.time(), ttl=settings.playback_trust.session_ttl, session_id=start["session_id"],
        video_id=video_id, viewer_id=start["viewer_id"], country=trusted_country, basis=basis,
        share_expires_at=share_exp, view_recorded=start["recorded"])
    body["analytics"] = {
        "ingest_url": _ingest_url(svc, request),
        "video_id": video_id,
        "session_id": start["session_id"],
        "viewer_id": start["viewer_id"],
        "country": trusted_country,
        "stream_start_event_id": start["event_id"],
        "stream_start_recorded": start["recorded"],
        "event_types": sorted(playback_types() - {"unknown", STREAM_START_TYPE}) + ["quality_switch"],
    }
    body["access"] = {"reason": decision.reason}
    # still processing: the master names the lowest rung, its playlist grows (EVENT) until EXT-X-ENDLIST
    body["processing"] = entry.asset is None
    return JSONResponse(_with_session(body, token, session), headers=NO_STORE)


# ------------------------------------------------------------------ renewal

def _renew_session(request: Request, body: RenewRequest | None, secret: bytes) -> PlaybackSession:
    """The session of a renewal (header or JSON body); ApiError 401 when absent or refused."""
    token = request.headers.get(SESSION_HEADER) or (body.session if body is not None else None)
    if not token:
        raise ApiError(401, f"renewal needs the playback session ({SESSION_HEADER} or {{\"{SESSION_FIELD}\": ...}})",
                       code="session_required", field=SESSION_FIELD)
    try:
        return verify_session(token, secret=secret, now=time.time())
    except ExpiredTokenError:
        raise ApiError(401, "the playback session expired: open the stream again (GET /v1/stream)",
                       code="session_expired", field=SESSION_FIELD) from None
    except TokenError as exc:
        raise ApiError(401, f"playback session refused: {exc.reason}", code="session_invalid",
                       field=SESSION_FIELD) from None


def _still_allowed(state: AccessState, request: Request, session: PlaybackSession,
                   preview: dict[str, Any] | None = None) -> VideoEntry:
    """Access re-checked now on the basis the session was opened on; ApiError 403 when it no longer holds.
    ``preview``: the provisional asset of a video still processing (it may be renewed too)."""
    viewer = state.viewer(request)
    try:
        entry, policy = state.known_entry(session.video_id)
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(403, f"renewal refused: {exc.message}", code="renewal_refused") from None
        raise
    if session.share_expires_at is not None and time.time() >= session.share_expires_at:
        raise ApiError(403, "renewal refused: the share link expired", code="renewal_refused")
    decision = key_access(entry, policy, session.basis, viewer)
    if not decision.allowed:
        raise ApiError(403, f"renewal refused: {decision.refusal}", code="renewal_refused")
    if entry.asset is None and preview is None:
        raise ApiError(403, "renewal refused: the video has no published asset any more", code="renewal_refused")
    return entry


@router.post(RENEW_PATH, response_model=StreamRenewal, responses=responses(401, 403, 429, 503))
async def renew_stream(request: Request, svc: Svc, body: RenewRequest | None = None) -> JSONResponse:
    """Fresh edge URLs, key grant and session for a playback still allowed (no second view_start)."""
    state = svc.access
    try:
        _check_rate(svc, request)
        session = _renew_session(request, body, state.secret)
        preview = await run_in_threadpool(preview_asset, svc, session.video_id)
        entry = await run_in_threadpool(_still_allowed, state, request, session, preview)
    except ApiError as exc:
        if exc.status == 403:
            log.info("stream renewal refused: %s", exc.message)
        raise
    plan = _plan(svc, session.video_id, entry.asset or preview or {})
    availability = await run_in_threadpool(rendition_availability, svc, session.video_id, plan.names, None)
    answer = await _delivery(request, svc, session.video_id, None, plan, availability, session.country,
                             session.basis, parse_grant_viewer(session.basis)[0] is not None, session.share_expires_at)
    token, renewed = issue_session(session, secret=state.secret, now=time.time(),
                                   ttl=svc.stream_settings.playback_trust.session_ttl)
    answer["session_id"] = session.session_id
    return JSONResponse(_with_session(answer, token, renewed), headers=NO_STORE)
