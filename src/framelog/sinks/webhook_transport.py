"""POSTing signed webhook messages, connecting only to addresses that were checked.

``GuardedBackend`` is the network backend under httpx: it resolves the host
itself, checks every address (``processors.webhook_targets``) and connects to
a checked address, so a name that resolves to a public address at
registration and to 127.0.0.1 later (DNS rebinding) is refused at connect
time. TLS still verifies the certificate against the URL's host name.
Redirects are not followed and proxy settings from the environment are
ignored: the request goes where the URL says, or nowhere.
"""
from __future__ import annotations

import socket
import time
import typing
from dataclasses import dataclass

import httpcore
import httpx

from framelog.core.config import WebhooksConfig
from framelog.processors.webhook_signing import signed_headers
from framelog.processors.webhook_targets import TargetRefused, check_addresses, literal_address, parse_target

MAX_ERROR_LENGTH = 300
USER_AGENT = "framelog-webhooks/1"


class GuardedBackend(httpcore.SyncBackend):
    def __init__(self, allowed_networks: tuple[str, ...]):
        self.allowed_networks = allowed_networks

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        literal = literal_address(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
        try:
            checked = check_addresses(host, addresses, self.allowed_networks)
        except TargetRefused as exc:
            raise httpcore.ConnectError(f"target refused: {exc}") from exc
        last: Exception | None = None
        for address in checked:                       # connect to what was checked, never re-resolve
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"cannot connect to {host}")


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, allowed_networks: tuple[str, ...], **kwargs: typing.Any):
        super().__init__(trust_env=False, **kwargs)
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                             max_connections=100, max_keepalive_connections=20,
                                             keepalive_expiry=5.0, network_backend=GuardedBackend(allowed_networks))


def webhook_client(webhooks: WebhooksConfig) -> httpx.Client:
    """An httpx client that only reaches allowed targets; never follows redirects."""
    timeout = webhooks.request_timeout
    return httpx.Client(transport=GuardedTransport(webhooks.allow_private_networks),
                        timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False,
                        headers={"user-agent": USER_AGENT})


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str | None


def post_message(client: httpx.Client, url: str, secret: str, msg_id: str, body: str) -> AttemptResult:
    """One signed POST (a fresh webhook-timestamp per attempt); 2xx is success, anything else a failure."""
    start = time.monotonic()
    try:
        parse_target(url)
        data = body.encode()
        response = client.post(url, content=data, headers=signed_headers(secret, msg_id, int(time.time()), data))
        latency = int((time.monotonic() - start) * 1000)
        response.close()
        if 200 <= response.status_code < 300:
            return AttemptResult(True, response.status_code, latency, None)
        return AttemptResult(False, response.status_code, latency, f"HTTP {response.status_code}")
    except TargetRefused as exc:
        return AttemptResult(False, None, int((time.monotonic() - start) * 1000),
                             f"target refused: {exc}"[:MAX_ERROR_LENGTH])
    except httpx.HTTPError as exc:
        return AttemptResult(False, None, int((time.monotonic() - start) * 1000),
                             f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH])
