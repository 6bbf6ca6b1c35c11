"""Webhook endpoints, managed by their owners.

    POST   /v1/webhooks                   {"url", "event_types"?, "workspace"?, "description"?}
                                          -> 201 the endpoint and its "secret" (whsec_..., shown this once)
    GET    /v1/webhooks                   the caller's endpoints (their own, their workspaces'; ops: all)
    GET    /v1/webhooks/{id}              one endpoint
    DELETE /v1/webhooks/{id}              -> 204; no more deliveries (pending ones are dropped)
    GET    /v1/webhooks/{id}/deliveries   ?limit=: the latest delivery steps (attempt, status, latency, error)
    POST   /v1/webhooks/{id}/replay       {"since"?: epoch seconds or ISO 8601} -> the messages sent again

An endpoint without a workspace receives the events of its owner's videos;
with one, those of the videos in that workspace (the caller must be a
member). Managing an endpoint: its owner, a member of its workspace, or an
``ops`` principal. Registrations are ``WebhookEndpoint`` events on
``webhooks.endpoints``; the secret is derived (``processors.webhook_signing``),
never stored. URLs are checked against SSRF rules at registration and at
every delivery (``processors.webhook_targets``).
"""
from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from framelog.api.access import _json_body
from framelog.api.access_state import ApiError, access_state, parse_workspace
from framelog.api.auth import forbidden, require
from framelog.core.config import Config
from framelog.processors.identity import OPS, VIDEOS_WRITE, Principal
from framelog.processors.webhook_signing import ENDPOINT_PREFIX, derive_secret, new_endpoint_id, new_salt
from framelog.processors.webhook_targets import TargetRefused, check_addresses, literal_address, parse_target
from framelog.processors.webhooks import EVENT_TYPES, Endpoint
from framelog.schemas.events import new_event
from framelog.streams import topics
from framelog.streams.exceptions import DeliveryError
from framelog.views.webhook_registry import EndpointRegistry

MAX_DESCRIPTION = 256
READY_TIMEOUT = 10.0
NO_STORE = {"Cache-Control": "no-store"}
_LOCK = threading.Lock()


# ------------------------------------------------------------ who is asking (the routes' one identity dependency)

@dataclass(frozen=True)
class Caller:
    user_id: str
    workspaces: frozenset[str]
    ops: bool = False


def webhook_caller(principal: Principal = Depends(require())) -> Caller:
    """Dependency: the signed-in caller managing webhooks: ``videos:write`` (their own videos) or ``ops``."""
    if not (principal.has(VIDEOS_WRITE) or principal.has(OPS)):
        raise forbidden(f"managing webhooks needs the {VIDEOS_WRITE!r} or {OPS!r} scope")
    return Caller(principal.sub, frozenset(principal.workspaces), principal.has(OPS))


def may_manage(caller: Caller, endpoint: Endpoint) -> bool:
    return caller.ops or endpoint.owner_id == caller.user_id or \
        (endpoint.workspace_id is not None and endpoint.workspace_id in caller.workspaces)


# ------------------------------------------------------------ state

def registry(app: Any) -> EndpointRegistry:
    found = getattr(app.state, "webhook_registry", None)
    if found is None:
        with _LOCK:
            found = getattr(app.state, "webhook_registry", None)
            if found is None:
                found = EndpointRegistry(access_state(app).config).start()
                app.state.webhook_registry = found
    return found


def _ready_registry(request: Request) -> EndpointRegistry:
    reg = registry(request.app)
    if not reg.wait_ready(READY_TIMEOUT):
        raise ApiError(503, "the webhook registry is still catching up with the log", {"Retry-After": "5"})
    return reg


def check_url(config: Config, url: Any) -> str:
    """400 unless an http(s) URL whose host resolves only to allowed addresses."""
    try:
        target = parse_target(url)
        literal = literal_address(target.host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
                addresses = list({i[4][0] for i in infos})
            except OSError as exc:
                raise TargetRefused(f"{target.host} does not resolve ({exc.strerror or exc})") from None
        check_addresses(target.host, addresses, config.webhooks.allow_private_networks)
    except TargetRefused as exc:
        raise ApiError(400, f"url refused: {exc}") from None
    return url


def _event_types(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "event_types: expected a list of strings")
    unknown = sorted(set(value) - set(EVENT_TYPES))
    if unknown:
        raise ApiError(400, f"event_types: unknown {unknown}; known: {list(EVENT_TYPES)}")
    return sorted(set(value))


def _endpoint(request: Request, caller: Caller, endpoint_id: str) -> Endpoint:
    if not endpoint_id.startswith(ENDPOINT_PREFIX) or len(endpoint_id) > 64 or not endpoint_id[3:].isalnum():
        raise ApiError(404, "no such webhook endpoint")
    found = _ready_registry(request).get(endpoint_id)
    if found is None or found.deleted or not may_manage(caller, found):
        raise ApiError(404, "no such webhook endpoint")        # the same answer whether it exists or not
    return found


def _emit(request: Request, record: dict[str, Any]) -> None:
    state = access_state(request.app)
    try:
        delivery = state.producer.deliver(topics.WEBHOOK_ENDPOINTS, "WebhookEndpoint", record,
                                          key=record["endpoint_id"], timeout=10.0)
    except DeliveryError as exc:
        raise ApiError(503, f"the log did not acknowledge the change: {exc}; retry", {"Retry-After": "1"}) from exc
    registry(request.app).wait_offset(delivery.topic, delivery.partition, delivery.offset, READY_TIMEOUT)


async def _answer(work: Any, *args: Any, status: int = 200) -> Response:
    try:
        out = await run_in_threadpool(work, *args)
    except ApiError as exc:
        return exc.response()
    if out is None:
        return Response(status_code=204, headers=NO_STORE)
    return JSONResponse(out, status_code=status, headers=NO_STORE)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        found = getattr(app.state, "webhook_registry", None)
        app.state.webhook_registry = None
        if found is not None:
            await run_in_threadpool(found.stop)


router = APIRouter(tags=["webhooks"], lifespan=lifespan)


# ------------------------------------------------------------ routes

def register(request: Request, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    config = access_state(request.app).config
    unknown = set(body) - {"url", "event_types", "workspace", "description"}
    if unknown:
        raise ApiError(400, f"unknown field(s) {sorted(unknown)}; expected url, event_types, workspace, description")
    url = check_url(config, body.get("url"))
    workspace = parse_workspace(body.get("workspace"))
    if workspace is not None and workspace not in caller.workspaces and not caller.ops:
        raise ApiError(403, f"you are not a member of workspace {workspace}")
    description = body.get("description") or ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ApiError(400, f"description: expected a string of at most {MAX_DESCRIPTION} characters")
    types = _event_types(body.get("event_types"))
    reg = _ready_registry(request)
    if sum(1 for e in reg.live() if e.owner_id == caller.user_id) >= config.webhooks.max_endpoints_per_owner:
        raise ApiError(409, f"at most {config.webhooks.max_endpoints_per_owner} endpoints per owner")
    endpoint_id, salt = new_endpoint_id(), new_salt()
    record = new_event("WebhookEndpoint", endpoint_id=endpoint_id, action="registered", owner_id=caller.user_id,
                       workspace_id=workspace, url=url, event_types=types, secret_salt=salt,
                       description=description, actor=caller.user_id)
    _emit(request, record)
    endpoint = reg.get(endpoint_id)
    view = endpoint.view() if endpoint is not None else {"id": endpoint_id, "url": url}
    return {**view, "secret": derive_secret(access_state(request.app).secret, endpoint_id, salt)}


@router.post("/v1/webhooks", status_code=201)
async def post_webhook(request: Request, caller: Caller = Depends(webhook_caller)) -> Response:
    try:
        body = await _json_body(request)
    except ApiError as exc:
        return exc.response()
    return await _answer(register, request, caller, body, status=201)


def list_endpoints(request: Request, caller: Caller) -> dict[str, Any]:
    mine = [e.view() for e in _ready_registry(request).live() if may_manage(caller, e)]
    return {"endpoints": sorted(mine, key=lambda v: v["created_at"])}


@router.get("/v1/webhooks")
async def get_webhooks(request: Request, caller: Caller = Depends(webhook_caller)) -> Response:
    return await _answer(list_endpoints, request, caller)


@router.get("/v1/webhooks/{endpoint_id}")
async def get_webhook(endpoint_id: str, request: Request, caller: Caller = Depends(webhook_caller)) -> Response:
    return await _answer(lambda: _endpoint(request, caller, endpoint_id).view())


def delete(request: Request, caller: Caller, endpoint_id: str) -> None:
    e = _endpoint(request, caller, endpoint_id)
    _emit(request, new_event("WebhookEndpoint", endpoint_id=e.endpoint_id, action="deleted", owner_id=e.owner_id,
                             workspace_id=e.workspace_id, url=e.url, event_types=list(e.event_types),
                             secret_salt=e.secret_salt, created_at=e.created_at_ms, description=e.description,
                             actor=caller.user_id))


@router.delete("/v1/webhooks/{endpoint_id}")
async def delete_webhook(endpoint_id: str, request: Request, caller: Caller = Depends(webhook_caller)) -> Response:
    return await _answer(delete, request, caller, endpoint_id)


def deliveries(request: Request, caller: Caller, endpoint_id: str, limit: int) -> dict[str, Any]:
    from framelog.views.webhook_replay import delivery_steps

    e = _endpoint(request, caller, endpoint_id)
    steps = delivery_steps(access_state(request.app).config, e.endpoint_id, limit=limit)
    return {"endpoint": e.endpoint_id, "deliveries": steps}


@router.get("/v1/webhooks/{endpoint_id}/deliveries")
async def get_deliveries(endpoint_id: str, request: Request, limit: int = 100,
                         caller: Caller = Depends(webhook_caller)) -> Response:
    return await _answer(deliveries, request, caller, endpoint_id, max(1, min(limit, 1000)))


def parse_since(value: Any) -> int:
    """Epoch milliseconds from epoch seconds or an ISO 8601 time; 0 when absent."""
    if value is None or value == "":
        return 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1000)
    if isinstance(value, str):
        try:
            return int(float(value) * 1000)
        except ValueError:
            pass
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, f"since: expected epoch seconds or ISO 8601, got {value!r}") from None
        return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000)
    raise ApiError(400, "since: expected epoch seconds or ISO 8601")


def replay(request: Request, caller: Caller, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
    from framelog.views.webhook_replay import replay_endpoint

    e = _endpoint(request, caller, endpoint_id)
    since = parse_since(body.get("since"))
    state = access_state(request.app)
    return replay_endpoint(state.config, e, since_ms=since, producer=state.producer, master=state.secret).summary()


@router.post("/v1/webhooks/{endpoint_id}/replay")
async def post_replay(endpoint_id: str, request: Request, caller: Caller = Depends(webhook_caller)) -> Response:
    try:
        body = await _json_body(request)
    except ApiError as exc:
        return exc.response()
    return await _answer(replay, request, caller, endpoint_id, body)
