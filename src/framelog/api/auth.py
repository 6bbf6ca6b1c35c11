"""Who is asking, for every route: one FastAPI dependency over ``processors.identity``.

    principal: Principal | None = Depends(current_principal)     # anonymous allowed (None)
    principal: Principal = Depends(require())                    # any signed-in principal
    principal: Principal = Depends(require(ANALYTICS_READ))      # that scope

A missing token where one is needed, or any token that does not verify
(forged, expired, wrong audience, retired key...): 401 with
``WWW-Authenticate: Bearer``. A valid token without the scope, or the wrong
owner: 403. A bad token is never downgraded to anonymous. The principal is
verified once per request and kept on ``request.state``, so code below the
route (``AccessState.viewer``) reads the same one. The verifier is the app's
(``Services.verifier``).

``GET /.well-known/jwks.json`` publishes the public keys of framelog's keyring,
so a customer's back end can verify framelog's tokens.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from framelog.api.errors import responses
from framelog.api.services import Svc, services
from framelog.core.errors import ApiError
from framelog.processors.identity import Principal
from framelog.processors.tokens import TokenError

UNSET = object()
CHALLENGE = {"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"}

router = APIRouter(tags=["auth"])


class Jwks(BaseModel):
    """A JSON Web Key Set (RFC 7517): framelog's public signing keys."""
    keys: list[dict[str, Any]]


def unauthorized(message: str, error: str | None = None, headers: dict[str, str] | None = None) -> ApiError:
    """401 with a Bearer challenge (``error``: RFC 6750's invalid_request / invalid_token)."""
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return ApiError(401, message, {**CHALLENGE, "WWW-Authenticate": challenge, **(headers or {})},
                    code=error or "unauthorized")


def forbidden(message: str, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(403, message, headers)


def principal_of(request: Request) -> Principal | None:
    """The request's verified principal (None: no Authorization header); ApiError 401 for a bad token."""
    cached = getattr(request.state, "principal", UNSET)
    if cached is not UNSET:
        return cached
    header = request.headers.get("authorization")
    principal = None
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Authorization must be 'Bearer <token>'", "invalid_request")
        try:
            principal = services(request).verifier.verify(token.strip())
        except TokenError as exc:
            raise unauthorized(f"token refused: {exc.reason}", "invalid_token") from None
    request.state.principal = principal
    return principal


def current_principal(request: Request) -> Principal | None:
    """Dependency: the principal, or None when the request carries no token."""
    return principal_of(request)


def require(scope: str | None = None) -> Callable[[Request], Principal]:
    """Dependency factory: a signed-in principal (401 otherwise) holding ``scope`` (403 otherwise)."""
    def dependency(request: Request) -> Principal:
        principal = principal_of(request)
        if principal is None:
            raise unauthorized("sign in: Authorization: Bearer <token>")
        if scope is not None and not principal.has(scope):
            raise forbidden(f"this needs the {scope!r} scope")
        return principal
    dependency.__name__ = f"require_{(scope or 'principal').replace(':', '_')}"
    return dependency


@router.get("/.well-known/jwks.json", response_model=Jwks, responses=responses(503))
def jwks(svc: Svc) -> JSONResponse:
    """framelog's public signing keys (retired keys are gone from here as they stop verifying)."""
    return JSONResponse(svc.verifier.keyring.jwks(), headers={"Cache-Control": "public, max-age=300"})
