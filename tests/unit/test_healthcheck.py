"""framelog healthcheck (issue 14 pt 4): each kind is asked on the listener it already has, over loopback."""
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from framelog.ops.healthcheck import health_url, run_healthcheck
from framelog.pipeline.worker import groups
from framelog.sinks.clickhouse.runner import metrics_port


def test_each_kind_names_its_own_listener(cfg):
    assert health_url(cfg, "api") == f"http://127.0.0.1:{cfg.stack.api_port}/healthz"
    assert health_url(cfg, "api", port=8000) == "http://127.0.0.1:8000/healthz"
    stage = groups(cfg.pipeline)[2]
    assert health_url(cfg, "worker", stage=stage) == f"http://127.0.0.1:{cfg.stack.worker_metrics_port + 2}/metrics"
    assert health_url(cfg, "sink") == f"http://127.0.0.1:{metrics_port(cfg.stack, cfg.pipeline)}/metrics"
    edge = cfg.cdn.providers["primary_cdn"].edge_port
    assert health_url(cfg, "edge", provider="primary_cdn") == f"http://127.0.0.1:{edge}/healthz"
    assert health_url(cfg, "shield") == f"http://127.0.0.1:{cfg.cdn.shield.shield_port}/healthz"
    with pytest.raises(ValueError, match="unknown stage"):
        health_url(cfg, "worker", stage="nope")
    with pytest.raises(ValueError, match="unknown provider"):
        health_url(cfg, "edge", provider="akamai")


def test_exit_status_follows_the_answer(cfg):
    class Ok(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/healthz" else 500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert run_healthcheck(cfg, "api", port=port, timeout=5) == 0
        assert run_healthcheck(cfg, "sink", port=port, timeout=5) == 1          # /metrics answers 500 here
    finally:
        server.shutdown()
    assert run_healthcheck(cfg, "api", port=port, timeout=2) == 1               # nothing listening any more
    assert run_healthcheck(cfg, "worker", stage="nope") == 2
