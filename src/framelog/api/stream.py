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
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from framelog.api.access_state import AccessState, ApiError, access_state, video_id_param
from framelog.api.auth import current_principal
from framelog.api.event_trust import SESSION_FIELD, SESSION_HEADER, event_trust, retry_after
from framelog.api.events import ParsedEvent, get_sender, playback_types
from framelog.api.keys import key_grant, key_url
from framelog.api.stream_availability import RESTORING, Availability, rendition_availability
from framelog.api.videos import STATUS_READY_TIMEOUT, services
from framelog.core import object_keys
from framelog.core.config import Config
from framelog.processors.access import Viewer
from framelog.processors.cdn_routing import Route, normalize_country, route
from framelog.processors.delivery_plan import DeliveryPlan, plan_for, plan_key
from framelog.processors.edge_signing import signed_edge_url
from framelog.processors.playback_session import PlaybackSession, issue_session, verify_session
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


def _restoring(subject: str, estimate: float | None) -> ApiError:
    """409 for a rendition (or a whole video) being restored: says "restoring" and when to ask again.

    Retry-After is rounded up and at least 1 s: an estimate of 0 means "due now,
    the tiering worker is about to promote it", not "unknown".
    """
    retry = RETRY_UNKNOWN_SECONDS if estimate is None else max(1, math.ceil(estimate))
    return ApiError(409, f"{subject} is being restored from cold storage; ready in about {retry}s",
                    {"Retry-After": str(retry)}, {"availability": RESTORING, "restore_estimate_seconds": estimate})


def _quality_param(value: str | None, config: Config) -> str | None:
    """None for the adaptive master (absent or 'auto'); 400 for a malformed or unknown quality name."""
    if value is None or value == "" or value == AUTO_QUALITY:
        return None
    ladder = [q.name for q in config.hls.quality_levels]
    if value not in ladder:
        raise ApiError(400, f"unknown quality {value[:40]!r}; expected one of {[AUTO_QUALITY, *ladder]}")
    return value


def _not_playable(app: Any, video_id: str) -> ApiError:
    """409 with the video's processing status (or what the upload says)."""
    svc = services(app)
    table = svc.status
    view = None
    if table.ready or table.wait_ready(STATUS_READY_TIMEOUT):
        view = table.get(video_id)
    if view is None:
        view = svc.uploads.status_view(video_id) or {"video_id": video_id, "state": "uploaded"}
    return ApiError(409, f"video {video_id} is not playable yet: {view.get('state')}", extra={"status": view})


def _share_ttl(share_expires_at: int | None, config: Config, now: float) -> float:
    """URL lifetime: stream_url_ttl, never past the share link's own expiry."""
    ttl = config.security.stream_url_ttl
    if share_expires_at is not None:
        ttl = min(ttl, share_expires_at - now)
    return max(ttl, 1.0)


def _urls(provider: str, video_id: str, quality: str | None, config: Config, secret: bytes, now: float,
          ttl: float) -> dict[str, str]:
    manifest = signed_edge_url(provider, object_keys.master_playlist(video_id), config, secret=secret, now=now, ttl=ttl)
    stream = manifest if quality is None else signed_edge_url(
        provider, object_keys.rendition_playlist(video_id, quality), config, secret=secret, now=now, ttl=ttl)
    return {"provider": provider, "stream_url": stream, "manifest_url": manifest}


def _subtitles(plan: DeliveryPlan, sign: Callable[[str], str]) -> list[dict[str, Any]]:
    """Published subtitle tracks: ``playlist_url`` (also named by the master playlist's EXT-X-MEDIA,
    so hls.js finds it on its own) and ``vtt_url`` (the whole track, for a <track> element)."""
    return [{"language": t.language, "label": t.language or "captions", "kind": "captions",
             "playlist_url": sign(t.playlist_path) if t.playlist_path else None,
             "vtt_url": sign(t.vtt_path) if t.vtt_path else None} for t in plan.subtitles]


def _plan(state: AccessState, video_id: str, asset: dict[str, Any]) -> DeliveryPlan:
    """The video's delivery plan, from the application cache (dropped when the catalog folds its events)."""
    return state.delivery_plans.get_or_compute(plan_key(video_id, asset), lambda: plan_for(video_id, asset),
                                               (video_id,))


async def _emit_stream_start(request: Request, video_id: str, viewer: Viewer | None, quality: str | None,
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
        sender = get_sender(request.app)
        encoded = await run_in_threadpool(sender.encode, [ParsedEvent(PLAYBACK_EVENTS, "PlaybackEvent", record)])
        await sender.deliver(encoded, STREAM_START_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - analytics trouble must not stop playback
        log.warning("stream start of %s not recorded: %s", video_id, exc)
        recorded = False
    return {"session_id": session_id, "viewer_id": viewer_id, "event_id": record["event_id"], "recorded": recorded}


def _ingest_url(request: Request) -> str:
    """Where the player posts its events: this API's ``POST /v1/events``."""
    return f"{_api_base(request)}/v1/events"


def _api_base(request: Request) -> str:
    """The API's public base (``delivery.public_api_url``), else the one the client used."""
    return request.app.state.config.delivery.public_api_url.rstrip("/") or str(request.base_url).rstrip("/")


def _resolve(state: AccessState, request: Request, video_id: str, share: str | None
             ) -> tuple[Viewer | None, VideoEntry, AccessDecision]:
    viewer = state.viewer(request)
    entry, policy = state.known_entry(video_id)
    decision = stream_access(entry, policy, viewer, share, secret=state.secret, now=time.time())
    if not decision.allowed:
        raise ApiError(403, decision.refusal)
    if entry.asset is None:
        raise _not_playable(request.app, video_id)
    return viewer, entry, decision


def _route(state: AccessState, country: str | None) -> tuple[Route, dict[str, bool]]:
    health = state.edge_health.healthy()
    return route(country, state.config.cdn, lambda p: health.get(p, False)), health


def _rate_limited(request: Request) -> ApiError | None:
    """429 when the client address spent its requests (``playback_trust.client_rate``)."""
    wait = event_trust(request.app).client_wait(request)
    if not wait:
        return None
    return ApiError(429, "too many requests from this client address", {"Retry-After": retry_after(wait)})


async def _delivery(request: Request, state: AccessState, video_id: str, quality: str | None, plan: DeliveryPlan,
                    availability: dict[str, Availability], route_country: str | None,
                    grant_basis: str | None, viewer_bound: bool, share_expires_at: int | None) -> dict[str, Any]:
    """The signed part of an answer: edge URLs (primary and fallback), renditions, poster, key grant, expiry."""
    config = state.config
    chosen, health = await run_in_threadpool(_route, state, route_country)
    now = time.time()
    ttl = _share_ttl(share_expires_at, config, now)
    primary = _urls(chosen.primary, video_id, quality, config, state.secret, now, ttl)
    fallback = _urls(chosen.fallback, video_id, quality, config, state.secret, now, ttl)

    def sign(key: str) -> str:
        return signed_edge_url(chosen.primary, key, config, secret=state.secret, now=now, ttl=ttl)

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
        grant = key_grant(config, video_id, grant_basis, ttl=ttl)
        encryption = {"method": "AES-128", "key_uri": key_url(config, video_id), "grant": grant,
                      "grant_requires_viewer_token": viewer_bound}
    mp4 = plan.download_path
    fallback["download_url"] = None if mp4 is None else signed_edge_url(
        chosen.fallback, mp4, config, secret=state.secret, now=now, ttl=ttl)
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
        "renewal": {"url": f"{_api_base(request)}{RENEW_PATH}",
                    "after_seconds": round(ttl * config.playback_trust.renew_at_fraction, 3)},
    }


def _with_session(body: dict[str, Any], token: str, session: PlaybackSession) -> dict[str, Any]:
    body["session"] = token
    body["session_expires_at"] = session.expires_at
    return body


@router.get("/v1/stream")
async def get_stream(request: Request) -> JSONResponse:
    q = request.query_params
    state = access_state(request.app)
    config = state.config
    try:
        limited = _rate_limited(request)
        if limited is not None:
            raise limited
        video_id = video_id_param(q.get("video_id"))
        quality = _quality_param(q.get("quality"), config)
        viewer, entry, decision = await run_in_threadpool(_resolve, state, request, video_id, q.get("share"))
        plan = _plan(state, video_id, entry.asset or {})
        names = plan.names
        if quality is not None and quality not in names:
            raise ApiError(404, f"quality {quality} was not published for video {video_id}; published: {names}")
        availability = await run_in_threadpool(rendition_availability, request.app, video_id, names, quality)
        if quality is not None and not availability.get(quality, Availability()).playable:
            raise _restoring(f"rendition {quality}", availability[quality].estimate_seconds)
        if quality is None and availability and not any(a.playable for a in availability.values()):
            known = [a.estimate_seconds for a in availability.values() if a.estimate_seconds is not None]
            raise _restoring(f"video {video_id}", min(known) if known else None)
    except ApiError as exc:
        return exc.response()

    # The viewer's country only from a trusted proxy's header; ``country=`` may steer
    # routing (tests, a viewer's declared region) but analytics record the trusted one.
    trusted_country = event_trust(request.app).country(request)
    country = normalize_country(q.get("country")) or trusted_country
    basis = grant_viewer(viewer, decision)
    share_exp = decision.share.expires_at if decision.share is not None else None
    body = await _delivery(request, state, video_id, quality, plan, availability, country, basis,
                           viewer is not None, share_exp)
    start = await _emit_stream_start(request, video_id, viewer, quality, trusted_country)
    token, session = issue_session(
        secret=state.secret, now=time.time(), ttl=config.playback_trust.session_ttl, session_id=start["session_id"],
        video_id=video_id, viewer_id=start["viewer_id"], country=trusted_country, basis=basis,
        share_expires_at=share_exp, view_recorded=start["recorded"])
    body["analytics"] = {
        "ingest_url": _ingest_url(request),
        "video_id": video_id,
        "session_id": start["session_id"],
        "viewer_id": start["viewer_id"],
        "country": trusted_country,
        "stream_start_event_id": start["event_id"],
        "stream_start_recorded": start["recorded"],
        "event_types": sorted(playback_types() - {"unknown", STREAM_START_TYPE}) + ["quality_switch"],
    }
    body["access"] = {"reason": decision.reason}
    return JSONResponse(_with_session(body, token, session), headers=NO_STORE)


# ------------------------------------------------------------------ renewal

async def _renew_session(request: Request, secret: bytes) -> PlaybackSession:
    """The session of a renewal (header or JSON body); ApiError 400/401 when absent or refused."""
    token = request.headers.get(SESSION_HEADER)
    if token is None:
        try:
            doc = await request.json()
        except ValueError:
            doc = None
        token = doc.get(SESSION_FIELD) if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise ApiError(401, f"renewal needs the playback session ({SESSION_HEADER} or {{\"{SESSION_FIELD}\": ...}})")
    try:
        return verify_session(token, secret=secret, now=time.time())
    except ExpiredTokenError:
        raise ApiError(401, "the playback session expired: open the stream again (GET /v1/stream)") from None
    except TokenError as exc:
        raise ApiError(401, f"playback session refused: {exc.reason}") from None


def _still_allowed(state: AccessState, request: Request, session: PlaybackSession) -> VideoEntry:
    """Access re-checked now on the basis the session was opened on; ApiError 403 when it no longer holds."""
    viewer = state.viewer(request)
    try:
        entry, policy = state.known_entry(session.video_id)
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(403, f"renewal refused: {exc.message}") from None
        raise
    if session.share_expires_at is not None and time.time() >= session.share_expires_at:
        raise ApiError(403, "renewal refused: the share link expired")
    decision = key_access(entry, policy, session.basis, viewer)
    if not decision.allowed:
        raise ApiError(403, f"renewal refused: {decision.refusal}")
    if entry.asset is None:
        raise ApiError(403, "renewal refused: the video has no published asset any more")
    return entry


@router.post(RENEW_PATH)
async def renew_stream(request: Request) -> JSONResponse:
    """Fresh edge URLs, key grant and session for a playback still allowed (no second view_start)."""
    state = access_state(request.app)
    try:
        limited = _rate_limited(request)
        if limited is not None:
            raise limited
        session = await _renew_session(request, state.secret)
        entry = await run_in_threadpool(_still_allowed, state, request, session)
        plan = _plan(state, session.video_id, entry.asset or {})
        availability = await run_in_threadpool(rendition_availability, request.app, session.video_id, plan.names,
                                               None)
    except ApiError as exc:
        if exc.status == 403:
            log.info("stream renewal refused: %s", exc.message)
        return exc.response()
    body = await _delivery(request, state, session.video_id, None, plan, availability, session.country,
                           session.basis, parse_grant_viewer(session.basis)[0] is not None, session.share_expires_at)
    token, renewed = issue_session(session, secret=state.secret, now=time.time(),
                                   ttl=state.config.playback_trust.session_ttl)
    body["session_id"] = session.session_id
    return JSONResponse(_with_session(body, token, renewed), headers=NO_STORE)
