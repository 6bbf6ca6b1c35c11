"""Standard Webhooks signatures, secrets and message ids (no I/O).

Per the Standard Webhooks specification: a message is POSTed with
``webhook-id`` (the message id, the receiver's idempotency key),
``webhook-timestamp`` (integer seconds of this attempt) and
``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256 over
``"{id}.{timestamp}.{body}"`` keyed with the base64-decoded part of the
endpoint's ``whsec_`` secret.

Secrets are never stored: an endpoint's secret is derived from framelog's
token secret and a random salt that is on the log (``WebhookEndpoint``), so
the API (which shows it once, at creation) and the delivery worker compute the
same one, and reading the log does not reveal it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
MESSAGE_PREFIX = "msg_"
ENDPOINT_PREFIX = "ep_"
SECRET_BYTES = 32                       # the specification asks for 24 to 64 bytes
_DERIVATION_LABEL = b"framelog webhook endpoint secret v1\x00"


def new_endpoint_id() -> str:
    return ENDPOINT_PREFIX + secrets.token_hex(12)


def new_salt() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")


def derive_secret(master: bytes, endpoint_id: str, salt: str) -> str:
    """The endpoint's ``whsec_...`` secret: HMAC-SHA256(master, label | endpoint id | salt)."""
    raw = hmac.new(master, _DERIVATION_LABEL + endpoint_id.encode() + b"\x00" + salt.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(raw[:SECRET_BYTES]).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret: its base64-decoded part."""
    body = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    if not key:
        raise ValueError("empty webhook secret")
    return key


def message_id(endpoint_id: str, event_type: str, source_event_id: str) -> str:
    """A stable id per (endpoint, event): every attempt and every replay of the message carries it."""
    digest = hashlib.sha256(f"{endpoint_id}\x00{event_type}\x00{source_event_id}".encode()).digest()
    return MESSAGE_PREFIX + base64.b32encode(digest[:15]).decode("ascii").lower()


def sign(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>``."""
    payload = body.encode() if isinstance(body, str) else body
    to_sign = f"{msg_id}.{int(timestamp)}.".encode() + payload
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()).decode("ascii")


def signed_headers(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(timestamp)),
            "webhook-signature": sign(secret, msg_id, timestamp, body), "content-type": "application/json"}


def verify(secret: str, headers: dict[str, str], body: str | bytes, *, now: float, tolerance: float = 300.0) -> bool:
    """Check a signed message as a receiver would (tests, and anyone without a Standard Webhooks library)."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and stamp and sigs) or not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = sign(secret, msg_id, int(stamp), body).split(",", 1)[1]
    return any(version == "v1" and hmac.compare_digest(sig, expected)
               for version, _, sig in (s.partition(",") for s in sigs.split(" ")))
