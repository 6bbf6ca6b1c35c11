"""Reading an API refusal: ``{"error": {"code", "message", ...}}`` (framelog's one error body), and the
older flat bodies (``{"error": "...", "reason", "event_index"}`` or ``{"detail": "..."}``) of earlier servers."""
from __future__ import annotations

from typing import Any, Dict

import httpx

__all__ = ["error_of", "error_message"]


def error_of(response: httpx.Response) -> Dict[str, Any]:
    """The refusal's facts: ``code``, ``message`` and whatever else it names (``event_index``, ``field``...);
    ``{}`` when the body is not the API's (a proxy's page, say)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    nested = body.get("error")
    if isinstance(nested, dict):
        return nested
    flat = {k: v for k, v in body.items() if k not in ("error", "detail", "reason")}
    message = nested if isinstance(nested, str) else body.get("detail")
    if message is not None:
        flat["message"] = message if isinstance(message, str) else str(message)
    if isinstance(body.get("reason"), str):
        flat["code"] = body["reason"]
    return flat


def error_message(response: httpx.Response) -> str:
    """What the API said went wrong, or the start of whatever else answered."""
    return str(error_of(response).get("message") or response.text[:500] or response.reason_phrase)
