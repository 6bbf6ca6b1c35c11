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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from framelog.api.access_state import parse_workspace
from framelog.api.auth import forbidden, require
from framelog.api.errors import responses
from framelog.api.services import Services, Svc
from framelog.core.config import WebhooksConfig
from framelog.core.errors import ApiError
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

def _ready_registry(svc: Services) -> EndpointRegistry:
    reg = svc.webhooks
    if not reg.wait_ready(READY_TIMEOUT):
        raise ApiError(503, "the webhook registry is still catching up with the log", {"Retry-After": "5"},
                       code="catching_up")
    return reg


def check_url(webhooks: WebhooksConfig, url: Any) -> str:
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
        check_addresses(target.host, addresses, webhooks.allow_private_networks)
    except TargetRefused as exc:
        raise ApiError(400, f"url refused: {exc}", code="url_refused", field="url") from None
    return url


def _event_types(value: list[str] | None) -> list[str]:
    if value is None:
        return []
    unknown = sorted(set(value) - set(EVENT_TYPES))
    if unknown:
        raise ApiError(400, f"event_types: unknown {unknown}; known: {list(EVENT_TYPES)}", code="invalid_field",
                       field="event_types")
    return sorted(set(value))


def _endpoint(svc: Services, caller: Caller, endpoint_id: str) -> Endpoint:
    if not endpoint_id.startswith(ENDPOINT_PREFIX) or len(endpoint_id) > 64 or not endpoint_id[3:].isalnum():
        raise ApiError(404, "no such webhook endpoint")
    found = _ready_registry(svc).get(endpoint_id)
    if found is None or found.deleted or not may_manage(caller, found):
        raise ApiError(404, "no such webhook endpoint")        # the same answer whether it exists or not
    return found


def _emit(svc: Services, record: dict[str, Any]) -> None:
    try:
        delivery = svc.producer.deliver(topics.WEBHOOK_ENDPOINTS, "WebhookEndpoint", record,
                                      key=record["endpoint_id"], timeout=10.0)
    except DeliveryError as exc:
        raise ApiError(503, f"the log did not acknowledge the change: {exc}; retry", {"Retry-After": "1"},
                       code="log_unavailable") from exc
    svc.webhooks.wait_offset(delivery.topic, delivery.partition, delivery.offset, READY_TIMEOUT)


def _json(out: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(out, status_code=status, headers=NO_STORE)


router = APIRouter(tags=["webhooks"], responses=responses(400, 401, 403, 404, 503))


# ------------------------------------------------------------ models

class WebhookRegistration(BaseModel):
    """A new endpoint: where to POST, which events (all when absent), for which workspace (else your videos)."""
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="http(s) URL; hosts resolving to private networks are refused")
    event_types: list[str] | None = Field(default=None, description=f"a subset of {list(EVENT_TYPES)}; all when absent")
    workspace: str | None = Field(default=None, description="a workspace you belong to; its videos' events")
    description: str = Field(default="", max_length=MAX_DESCRIPTION)


class WebhookEndpoint(BaseModel):
    """An endpoint as its managers see it (never its secret)."""
    id: str
    url: str
    owner: str
    workspace: str | None
    event_types: list[str]
    description: str
    created_at: str | None


class RegisteredWebhook(WebhookEndpoint):
    secret: str = Field(description="the signing secret (whsec_...), shown this once")


class WebhookList(BaseModel):
    endpoints: list[WebhookEndpoint]


class DeliveryStep(BaseModel):
    model_config = ConfigDict(extra="allow")
    attempt: int | None = None
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


class DeliveryList(BaseModel):
    endpoint: str
    deliveries: list[DeliveryStep]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: float | str | None = Field(default=None, description="epoch seconds or ISO 8601; everything when absent")


class ReplaySummary(BaseModel):
    endpoint: str
    since: str | None
    replayed: int
    delivered: int
    failed: int


# ------------------------------------------------------------ routes

def register(svc: Services, caller: Caller, body: WebhookRegistration) -> dict[str, Any]:
    config = svc.config
    url = check_url(config.webhooks, body.url)
    workspace = parse_workspace(body.workspace)
    if workspace is not None and workspace not in caller.workspaces and not caller.ops:
        raise ApiError(403, f"you are not a member of workspace {workspace}")
    types = _event_types(body.event_types)
    reg = _ready_registry(svc)
    if sum(1 for e in reg.live() if e.owner_id == caller.user_id) >= config.webhooks.max_endpoints_per_owner:
        raise ApiError(409, f"at most {config.webhooks.max_endpoints_per_owner} endpoints per owner")
    endpoint_id, salt = new_endpoint_id(), new_salt()
    record = new_event("WebhookEndpoint", endpoint_id=endpoint_id, action="registered", owner_id=caller.user_id,
                       workspace_id=workspace, url=url, event_types=types, secret_salt=salt,
                       description=body.description, actor=caller.user_id)
    _emit(svc, record)
    endpoint = reg.get(endpoint_id)
    view = endpoint.view() if endpoint is not None else {"id": endpoint_id, "url": url}
    return {**view, "secret": derive_secret(svc.secret, endpoint_id, salt)}


@router.post("/v1/webhooks", status_code=201, response_model=RegisteredWebhook, responses=responses(409))
async def post_webhook(body: WebhookRegistration, svc: Svc, caller: Caller = Depends(webhook_caller)) -> Response:
    """Register an endpoint; the answer carries its signing secret, shown this once."""
    return _json(await run_in_threadpool(register, svc, caller, body), 201)


@router.get("/v1/webhooks", response_model=WebhookList)
async def get_webhooks(svc: Svc, caller: Caller = Depends(webhook_caller)) -> Response:
    """The caller's endpoints: their own, their workspaces' (ops: all)."""
    def mine() -> dict[str, Any]:
        found = [e.view() for e in _ready_registry(svc).live() if may_manage(caller, e)]
        return {"endpoints": sorted(found, key=lambda v: v["created_at"])}
    return _json(await run_in_threadpool(mine))


@router.get("/v1/webhooks/{endpoint_id}", response_model=WebhookEndpoint)
async def get_webhook(endpoint_id: str, svc: Svc, caller: Caller = Depends(webhook_caller)) -> Response:
    return _json(await run_in_threadpool(lambda: _endpoint(svc, caller, endpoint_id).view()))


def delete(svc: Services, caller: Caller, endpoint_id: str) -> None:
    e = _endpoint(svc, caller, endpoint_id)
    _emit(svc, new_event("WebhookEndpoint", endpoint_id=e.endpoint_id, action="deleted", owner_id=e.owner_id,
                         workspace_id=e.workspace_id, url=e.url, event_types=list(e.event_types),
                         secret_salt=e.secret_salt, created_at=e.created_at_ms, description=e.description,
                         actor=caller.user_id))


@router.delete("/v1/webhooks/{endpoint_id}", status_code=204, response_class=Response)
async def delete_webhook(endpoint_id: str, svc: Svc, caller: Caller = Depends(webhook_caller)) -> Response:
    """No more deliveries to this endpoint (pending ones are dropped)."""
    await run_in_threadpool(delete, svc, caller, endpoint_id)
    return Response(status_code=204, headers=NO_STORE)


@router.get("/v1/webhooks/{endpoint_id}/deliveries", response_model=DeliveryList)
async def get_deliveries(endpoint_id: str, svc: Svc, limit: int = Query(100, description="at most 1000"),
                         caller: Caller = Depends(webhook_caller)) -> Response:
    """The latest delivery steps of an endpoint (attempt, status, latency, error)."""
    from framelog.views.webhook_replay import delivery_steps

    def steps() -> dict[str, Any]:
        e = _endpoint(svc, caller, endpoint_id)
        return {"endpoint": e.endpoint_id,
                "deliveries": delivery_steps(svc.config.streams, e.endpoint_id, limit=max(1, min(limit, 1000)))}
    return _json(await run_in_threadpool(steps))


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
            raise ApiError(400, f"since: expected epoch seconds or ISO 8601, got {value!r}", code="invalid_field",
                           field="since") from None
        return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000)
    raise ApiError(400, "since: expected epoch seconds or ISO 8601", code="invalid_field", field="since")


def replay(svc: Services, caller: Caller, endpoint_id: str, body: ReplayRequest) -> dict[str, Any]:
    from framelog.views.webhook_replay import replay_endpoint

    e = _endpoint(svc, caller, endpoint_id)
    since = parse_since(body.since)
    return replay_endpoint(svc.config.streams, svc.config.webhooks, e, since_ms=since, producer=svc.producer,
                           master=svc.secret).summary()


@router.post("/v1/webhooks/{endpoint_id}/replay", response_model=ReplaySummary)
async def post_replay(endpoint_id: str, svc: Svc, body: ReplayRequest | None = None,
                      caller: Caller = Depends(webhook_caller)) -> Response:
    """Send the endpoint's messages since ``since`` again, in event order."""
    return _json(await run_in_threadpool(replay, svc, caller, endpoint_id, body or ReplayRequest()))
