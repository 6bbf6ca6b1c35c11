"""The API's one exception handler: every refusal in one JSON body shape.

    {"error": {"code": "session_expired", "message": "the playback session expired; ...", ...}}

``code`` is a stable word a program can switch on, ``message`` the sentence
for people; further fields name what was refused where it helps
(``event_index`` and ``field`` for a playback batch, ``availability`` and
``restore_estimate_seconds`` for a rendition being restored, ``status`` for a
video not playable yet, ``retryable``). Routes raise ``ApiError``
(``framelog.core.errors``) with the HTTP status and any headers
(``Retry-After``, ``WWW-Authenticate``, tus headers); nothing else writes an
error body. Starlette's own refusals (unknown path, method not allowed) and
request validation (a parameter or body of the wrong type: 400
``invalid_field``) come out in the same shape, and so does a bug (500,
logged, no detail leaked).
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from framelog.core.errors import STATUS_CODES, ApiError, InvalidIdError

log = logging.getLogger(__name__)

NO_STORE = "no-store"


class ErrorDetail(BaseModel):
    """What went wrong: ``code`` for programs, ``message`` for people, and facts of the refusal."""
    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every answer other than success."""
    error: ErrorDetail


def error_response(exc: ApiError, request: Request | None = None) -> Response:
    headers = {"Cache-Control": NO_STORE, **exc.headers}
    if request is not None and request.method == "HEAD":
        return Response(status_code=exc.status, headers=headers)
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts)


def validation_error(exc: RequestValidationError) -> ApiError:
    """A request that does not fit the route's declared parameters or body: 400 naming the first bad field."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = _field(tuple(first.get("loc", ())))
    message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return ApiError(400, message, code="invalid_field", field=where or None)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc, request)


async def _invalid_id(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(400, str(exc), code="invalid_id"), request)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc), request)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else STATUS_CODES.get(exc.status_code, "error")
    return error_response(ApiError(exc.status_code, message, dict(exc.headers or {})), request)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(ApiError(500, "internal error; the API's log says more"), request)


def install_error_handlers(app: FastAPI) -> None:
    """Render ApiError (and what Starlette and FastAPI refuse by themselves) as ``ErrorBody``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(InvalidIdError, _invalid_id)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document as the handler answers: FastAPI's 422 validation answers are 400 ``ErrorBody``."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            answers = op.get("responses", {})
            if answers.pop("422", None) is not None:
                answers.setdefault("400", {"description": "bad_request"})
            for status, answer in answers.items():
                if status[0] in "45":              # refusals are JSON whatever the route answers on success
                    answer["content"] = {"application/json": {"schema": ref}}
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    if "ErrorBody" not in components:
        components.update({k: v for k, v in ErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}").get("$defs", {}).items()})
        components["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components["ErrorBody"].pop("$defs", None)
    return schema


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route's refusals, all in the ``ErrorBody`` shape."""
    return {s: {"model": ErrorBody, "description": STATUS_CODES.get(s, "error").replace("_", " ")}
            for s in statuses}
