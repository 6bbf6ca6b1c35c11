"""A real HTTP server on loopback that receives webhooks for the tests, and the worker process they run.

Each path is one endpoint; ``behaviour(path, headers, body)`` returns the status
to answer (a test makes an endpoint fail for some messages). Every request is
kept with its headers, body and arrival time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from framelog.core.config import Config, load_config, merge_overlay


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    def __init__(self, behaviour: Callable[[str, dict[str, str], bytes], int] | None = None, delay: float = 0.0):
        self.behaviour = behaviour or (lambda path, headers, body: 200)
        self.delay = delay
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:           # noqa: N802 - http.server's naming
                declared = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(declared)
                if len(body) < declared:
                    return                       # the sender died mid-request (kill -9): not a delivery
                headers = {k.lower(): v for k, v in self.headers.items()}
                if outer.delay:
                    time.sleep(outer.delay)      # a slow receiver, so a worker can be killed mid-stream
                status = outer.behaviour(self.path, headers, body)
                with outer._lock:
                    outer.requests.append(Received(self.path, headers, body, time.monotonic(), status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def at(self, path: str, ok_only: bool = False) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path and (not ok_only or 200 <= r.status < 300)]


def webhook_overlay(config: Config, directory: Path, **webhooks: Any) -> tuple[Path, Config]:
    """The current overlay plus webhook settings (loopback allowed, fast retries), written to a file."""
    base: dict[str, Any] = {}
    current = os.environ.get("FRAMELOG_CONFIG_OVERLAY")
    if current:
        base = yaml.safe_load(Path(current).read_text()) or {}
    base.setdefault("stack", {})["state_dir"] = str(config.stack.state_dir)
    merged = merge_overlay(base, {"webhooks": {"allow_private_networks": ["127.0.0.1/32"], **webhooks}})
    path = directory / "webhooks-overlay.yaml"
    path.write_text(yaml.safe_dump(merged))
    return path, load_config(overlay=path)


class WebhookWorkerProcess:
    """``framelog worker --stage webhooks`` as a child process on the given overlay (kill -9 able)."""

    def __init__(self, config: Config, overlay: Path, log_path: Path):
        self.config, self.overlay, self.log_path = config, overlay, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "FRAMELOG_CONFIG_OVERLAY": str(self.overlay)}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "framelog.cli.main", "--state-dir",
                                      str(self.config.stack.state_dir), "worker", "--stage", "webhooks"],
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def group_members(config: Config, group: str) -> int:
    from framelog.streams.admin import admin_client

    admin = admin_client(config.kafka, config.stack)
    desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=10)
    return len(desc.members)


def make_app(config: Config) -> Any:
    """The API's routers these tests use, without the analytics router: it would open the embedded
    ClickHouse engine in the test process, and chdb lets one process only (the API service's)."""
    from framelog.api import access, live, videos, webhooks
    from framelog.api.app import assemble

    return assemble(config, [m.router for m in (videos, access, webhooks, live)])
