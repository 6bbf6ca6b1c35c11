"""Webhook targets cannot reach loopback, private or metadata addresses (SSRF).

Without an allow-list the API refuses such URLs at registration (400), and the
delivery transport refuses to connect to them even when a name resolves there
(so a name that later resolves to 127.0.0.1 delivers nothing): a real
loopback server stands ready and must receive no request.
"""
from __future__ import annotations

import pytest

from framelog.processors.webhook_signing import derive_secret
from framelog.sinks.webhook_transport import post_message, webhook_client
from tests.integration.support.webhook_receiver import Receiver, make_app

REFUSED = ["http://127.0.0.1:8080/x", "http://localhost/x", "http://169.254.169.254/latest/meta-data/",
           "http://[::1]/x", "http://10.0.0.5/x", "http://192.168.1.1/x", "http://0.0.0.0/x",
           "http://[::ffff:127.0.0.1]/x", "ftp://example.com/x", "file:///etc/passwd", "http://u:p@example.com/"]


def test_the_transport_refuses_loopback_without_an_allow_list(config):
    assert config.webhooks.allow_private_networks == ()
    with Receiver() as rx, webhook_client(config.webhooks) as client:
        for host in ("127.0.0.1", "localhost"):
            port = rx.server.server_address[1]
            result = post_message(client, f"http://{host}:{port}/hook", derive_secret(b"k" * 32, "ep_x", "s"),
                                  "msg_1", "{}")
            assert not result.ok and result.status_code is None and "refused" in (result.error or ""), result
        assert rx.requests == []


@pytest.mark.integration
def test_registration_refuses_internal_targets(stack, config):
    from fastapi.testclient import TestClient

    from framelog.processors.identity import Keyring, mint_token

    token = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), "sam", scopes=["videos:write"])
    with TestClient(make_app(config)) as api:
        for url in REFUSED:
            r = api.post("/v1/webhooks", json={"url": url}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 400, (url, r.text)
            assert "url refused" in r.json()["error"]["message"]
