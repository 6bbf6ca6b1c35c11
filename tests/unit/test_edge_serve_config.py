"""`framelog edge serve` renders the production edge from framelog.yaml plus the container's environment."""
from __future__ import annotations

import pytest

from framelog.cli.main import build_parser
from framelog.core.config import DEFAULT_CONFIG_PATH, load_config
from framelog.processors.edge_signing import edge_secret, origin_token
from framelog.processors.tokens import load_or_create_secret
from framelog.stack.edge_serve import edge_for
from framelog.stack.nginx import OriginShield
from framelog.stack.process import StackError

SECRET = "s" * 40


@pytest.fixture()
def prod_config(monkeypatch, tmp_path):
    """The environment docker-compose gives an edge container."""
    monkeypatch.delenv("FRAMELOG_CONFIG_OVERLAY", raising=False)
    monkeypatch.setenv("FRAMELOG_S3_ENDPOINT", "http://s3:8333")
    monkeypatch.setenv("FRAMELOG_S3_BUCKET", "media")
    monkeypatch.setenv("FRAMELOG_TOKEN_SECRET", SECRET)
    monkeypatch.setenv("FRAMELOG_STATE_DIR", str(tmp_path / "state"))
    return load_config(DEFAULT_CONFIG_PATH)


def test_production_edge_fetches_from_the_environments_origin(prod_config, tmp_path):
    edge = edge_for(prod_config, "secondary_cdn", "0.0.0.0")
    text = edge._render()
    port = prod_config.cdn.providers["secondary_cdn"].edge_port
    assert f"listen 0.0.0.0:{port};" in text
    shield = f"{prod_config.stack.host}:{prod_config.cdn.shield.shield_port}"    # over loopback, same namespace
    assert f"server {shield};" in text and "proxy_pass http://shield$object;" in text
    assert f"proxy_cache_path {tmp_path}/state/edge-secondary_cdn/cache " in text
    shield_text = OriginShield(prod_config)._render()                  # the shield reads the environment's origin
    assert "server s3:8333;" in shield_text and "proxy_set_header Host s3:8333;" in shield_text
    assert "proxy_pass http://origin/media$object;" in shield_text
    assert f"proxy_cache_path {tmp_path}/state/origin-shield/cache " in shield_text
    secret = load_or_create_secret(prod_config.security, prod_config.stack.state_dir)
    assert secret == SECRET.encode()
    assert edge_secret(secret) in text and f'Referer "{origin_token(secret)}"' in text
    assert SECRET not in text                    # only derived keys reach nginx's config


def test_local_edges_still_listen_on_stack_host(prod_config):
    assert f"listen {prod_config.stack.host}:" in edge_for(prod_config, "primary_cdn", None)._render()


def test_origin_must_be_plain_http(prod_config, monkeypatch):
    monkeypatch.setenv("FRAMELOG_S3_ENDPOINT", "s3:8333")
    with pytest.raises(StackError, match="endpoint_url must be http://host:port"):
        OriginShield(load_config(DEFAULT_CONFIG_PATH))._render()


def test_unknown_provider_is_named(prod_config):
    with pytest.raises(StackError, match="no such provider.*primary_cdn"):
        edge_for(prod_config, "tertiary_cdn", None)


def test_cli_parses_the_compose_command():
    args = build_parser().parse_args(["edge", "serve", "--provider", "primary_cdn", "--listen", "0.0.0.0"])
    assert (args.edge_command, args.provider, args.listen) == ("serve", "primary_cdn", "0.0.0.0")
    args = build_parser().parse_args(["edge", "serve", "--shield"])
    assert (args.shield, args.provider, args.listen) == (True, None, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["edge", "serve", "--shield", "--provider", "primary_cdn"])


def test_an_unreachable_origin_is_named_after_the_deadline(prod_config, monkeypatch):
    from framelog.stack.edge_serve import wait_for_origin_policy

    monkeypatch.setenv("FRAMELOG_S3_ENDPOINT", "http://127.0.0.1:1")       # nothing listens on port 1
    config = load_config(DEFAULT_CONFIG_PATH)
    with pytest.raises(StackError, match=r"read policy on http://127.0.0.1:1 bucket media within 0s"):
        wait_for_origin_policy(config, edge_for(config, "primary_cdn", None), timeout=0)
