"""The two CDN edges: nginx caching reverse proxies in front of the S3 origin.

One ``Edge`` per ``cdn_strategy`` provider (the seed's primary and secondary
CDN), each an nginx master process on its configured ``edge_port`` with its
own configuration, proxy cache, access log and error log under
``<state>/edge-<provider>/``. What an edge does:

* ``GET|HEAD /s/<sig>/<expires>/{hls|thumbnails}/<video_id>/<file>``: checks
  the path signature with ``secure_link`` (processors/edge_signing.py) and
  refuses unsigned, forged, expired or other-video requests with 403; then
  serves the object from its cache or fetches it from the bucket. Cache
  lifetimes per file type come from ``caching_rules`` (``cache_control.edge_ttl``);
  the origin's Cache-Control (stored with each object) reaches the browser.
  The cache key is the object key (``/hls/<id>/…``), so every viewer's
  signature shares one cached copy.
* ``/_purge/<object key>``: removes one cached object (ngx_cache_purge), only
  from loopback and only with the ``X-Framelog-Purge`` token.
* ``/healthz``: 200 while the edge runs.

The origin is read without S3 credentials: after start the edge puts a bucket
policy allowing ``s3:GetObject`` on ``hls/*`` and ``thumbnails/*`` only (no
list, no writes, no ``keys/`` or uploads), and only to requests carrying the
edges' ``Referer`` token (``edge_signing.origin_token``, CloudFront's
custom-origin pattern: SeaweedFS evaluates ``aws:Referer``); nginx passes only
GET and HEAD.
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from framelog.config import Config
from framelog.processors import cache_control as cc
from framelog.processors.edge_signing import EDGE_KINDS, SIGNED_PREFIX, edge_secret, origin_token, purge_token
from framelog.stack.process import Component, StackError, rotate_log

PURGE_MODULE = Path("/usr/lib/nginx/modules/ngx_http_cache_purge_module.so")
PURGE_HEADER = "X-Framelog-Purge"
HEALTH_PATH = "/healthz"
PURGE_PATH = "/_purge"
INTERNAL_PATH = "/_edge"
LOG_FORMAT = "framelog_edge"
ACCESS_LOG_NAME = "access.log"
CACHE_ZONE = "edge"
CACHE_KEYS_ZONE_SIZE = "10m"        # ~80k keys
CACHE_MAX_SIZE = "2g"
CACHE_INACTIVE = "30d"              # the longest caching_rules lifetime; expiry itself is per type
POLICY_SID = "FramelogEdgeRead"
HEALTH_TIMEOUT = 2.0
ORIGIN_HIDDEN_HEADERS = ("x-amz-request-id", "x-amz-id-2", "Set-Cookie", "Vary", "Access-Control-Allow-Origin",
                         "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                         "Access-Control-Expose-Headers", "Access-Control-Max-Age", "Access-Control-Allow-Credentials")
PREFLIGHT_MAX_AGE = 3600             # seconds a browser may reuse a CORS preflight answer
ORIGIN_CONNECT_TIMEOUT = "5s"
ORIGIN_READ_TIMEOUT = "60s"
_OBJECT_CHARS = r"[A-Za-z0-9_.\-/]"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise StackError("edge", "nginx not found: scripts/bootstrap.sh installs nginx and "
                                 "libnginx-mod-http-cache-purge")
    return found


def edge_name(provider_key: str) -> str:
    return f"edge-{provider_key}"


def edge_dir(config: Config, provider_key: str) -> Path:
    return config.stack.state_dir / edge_name(provider_key)


def access_log_path(config: Config, provider_key: str) -> Path:
    """Where the edge of ``provider_key`` writes its access log (one JSON object per line)."""
    return edge_dir(config, provider_key) / ACCESS_LOG_NAME


def cache_dir(config: Config, provider_key: str) -> Path:
    return edge_dir(config, provider_key) / "cache"


def _suffix_groups() -> dict[tuple[str, str], list[str]]:
    """(kind, caching_rules file type) -> object suffixes, from processors/cache_control's mapping."""
    groups: dict[tuple[str, str], list[str]] = {}
    for suffix in cc.CONTENT_TYPES:
        for kind in EDGE_KINDS:
            file_type = cc.file_type_for_key(f"{kind}/v/f{suffix}")
            if file_type is not None and file_type != cc.HLS_KEYS:
                groups.setdefault((kind, file_type), []).append(suffix.lstrip("."))
    return groups


def _regex_alternation(words: list[str]) -> str:
    return "|".join(w.replace(".", r"\.") for w in sorted(words))


def _nginx_string(value: str) -> str:
    if any(c in value for c in "\"\\$;{}\n"):
        raise ValueError(f"value not safe inside an nginx string: {value!r}")
    return value


def render_config(config: Config, provider_key: str, directory: Path, *, secret: bytes,
                  run_as: tuple[str, str] | None = None, listen_host: str | None = None) -> str:
    """The nginx.conf of one edge (pure: tests read it without starting nginx).

    It listens on ``listen_host`` (default ``stack.host``: loopback locally; a
    container binds every interface) and fetches from ``object_storage.endpoint_url``.
    """
    provider = config.cdn.providers[provider_key]
    host = _nginx_string(listen_host or config.stack.host)
    origin = urlsplit(config.object_storage.endpoint_url)
    if origin.scheme != "http" or not origin.hostname:
        raise StackError(edge_name(provider_key), f"object_storage.endpoint_url must be http://host:port for the "
                                                  f"local edges, got {config.object_storage.endpoint_url!r}")
    origin_addr = _nginx_string(f"{origin.hostname}:{origin.port or 80}")
    bucket = _nginx_string(config.object_storage.bucket)
    edge_key = edge_secret(secret)
    purge_key = purge_token(secret)
    origin_key = origin_token(secret)
    d = directory
    headers = (f'        add_header X-Edge "{provider_key}" always;\n'
               '        add_header Access-Control-Allow-Origin "*" always;\n'
               '        add_header Access-Control-Expose-Headers "X-Cache-Status, X-Edge" always;\n')
    # a player that adds headers to its requests (hls.js xhrSetup) makes the browser ask first
    preflight = ('        add_header Access-Control-Allow-Methods "GET, HEAD, OPTIONS" always;\n'
                 '        add_header Access-Control-Allow-Headers $http_access_control_request_headers always;\n'
                 f'        add_header Access-Control-Max-Age {PREFLIGHT_MAX_AGE} always;\n')
    proxy_common = (
        "        internal;\n"
        "        limit_except GET HEAD { deny all; }\n"
        f"        proxy_pass http://origin/{bucket}$object;\n"
        "        proxy_http_version 1.1;\n"
        '        proxy_set_header Connection "";\n'
        f"        proxy_set_header Host {origin_addr};\n"
        '        proxy_set_header Authorization "";\n'
        '        proxy_set_header Cookie "";\n'
        f'        proxy_set_header Referer "{origin_key}";\n'          # the bucket policy's condition
        # CORS is the edge's to answer: the origin would add its own (a second, per-origin
        # Access-Control-Allow-Origin, which browsers refuse) and a Vary: Origin into the cache
        '        proxy_set_header Origin "";\n'
        '        proxy_set_header Access-Control-Request-Method "";\n'
        '        proxy_set_header Access-Control-Request-Headers "";\n'
        + "".join(f"        proxy_hide_header {h};\n" for h in ORIGIN_HIDDEN_HEADERS) +
        f"        proxy_cache {CACHE_ZONE};\n"
        "        proxy_cache_key $object;\n"
        "        proxy_cache_lock on;\n"
        "        proxy_cache_revalidate on;\n"
        "        proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;\n"
        "        add_header X-Cache-Status $upstream_cache_status always;\n" + headers)
    typed = []
    for (kind, file_type), suffixes in sorted(_suffix_groups().items()):
        ttl = cc.edge_ttl(file_type, config)
        caching = (f"        proxy_ignore_headers Cache-Control Expires Set-Cookie X-Accel-Expires Vary;\n"
                   f"        proxy_cache_valid 200 {ttl}s;\n") if ttl > 0 else \
            "        proxy_no_cache 1;\n        proxy_cache_bypass 1;\n"
        pattern = f"^{INTERNAL_PATH}(?<object>/{kind}/{_OBJECT_CHARS}+\\.(?:{_regex_alternation(suffixes)}))$"
        typed.append(f"    # {file_type}: caching_rules.{file_type} (edge {ttl}s)\n"
                     f'    location ~ "{pattern}" {{\n' + proxy_common + caching + "    }\n")
    user = f"user {run_as[0]} {run_as[1]};\n" if run_as else ""
    kinds = "|".join(EDGE_KINDS)
    return f"""# framelog edge {provider_key} ({provider.provider} stand-in); generated by stack/nginx.py, do not edit
load_module {PURGE_MODULE};
{user}worker_processes 1;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 512; }}
http {{
    server_tokens off;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 30s;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    log_format {LOG_FORMAT} escape=json '{{"time":"$time_iso8601","method":"$request_method","path":"$uri",'
        '"status":$status,"cache":"$upstream_cache_status","bytes":$bytes_sent,"body_bytes":$body_bytes_sent,'
        '"request_time":$request_time,"upstream_time":"$upstream_response_time"}}';
    proxy_cache_path {d}/cache levels=1:2 keys_zone={CACHE_ZONE}:{CACHE_KEYS_ZONE_SIZE} max_size={CACHE_MAX_SIZE} inactive={CACHE_INACTIVE} use_temp_path=off;
    proxy_connect_timeout {ORIGIN_CONNECT_TIMEOUT};
    proxy_read_timeout {ORIGIN_READ_TIMEOUT};
    upstream origin {{
        server {origin_addr};
        keepalive 8;
    }}
    server {{
        listen {host}:{provider.edge_port};
        access_log {d}/{ACCESS_LOG_NAME} {LOG_FORMAT};

    location = {HEALTH_PATH} {{
        access_log off;
        default_type text/plain;
{headers}        return 200 "ok\\n";
    }}

    # signed object URLs: /{SIGNED_PREFIX}/<sig>/<expires>/<kind>/<video_id>/<file>; scope /<kind>/<video_id>/
    location ~ "^/{SIGNED_PREFIX}/(?<sig>[A-Za-z0-9_-]{{22}})/(?<expires>[0-9]{{1,12}})/(?<kind>{kinds})/(?<vid>[A-Za-z0-9_-]{{1,64}})/{_OBJECT_CHARS}+$" {{
{headers}{preflight}        if ($request_method = OPTIONS) {{ return 204; }}
        if ($request_method !~ ^(GET|HEAD)$) {{ return 403; }}
        secure_link $sig,$expires;
        secure_link_md5 "$expires/$kind/$vid/ {edge_key}";
        if ($secure_link = "") {{ return 403; }}
        if ($secure_link = "0") {{ return 403; }}
        rewrite "^/{SIGNED_PREFIX}/[^/]+/[0-9]+(/.*)$" {INTERNAL_PATH}$1 last;
    }}

{"".join(typed)}
    # AES keys are the key endpoint's to hand out, never an edge's, wherever one was put
    location ~ "^{INTERNAL_PATH}/.*\\.key$" {{
        internal;
{headers}        return 403;
    }}

    # any other object under the served prefixes: the origin's own Cache-Control decides
    location ~ "^{INTERNAL_PATH}(?<object>/(?:{kinds})/{_OBJECT_CHARS}+)$" {{
{proxy_common}    }}

    location ~ "^{PURGE_PATH}(?<object>/(?:{kinds})/{_OBJECT_CHARS}+)$" {{
        allow 127.0.0.1;
        allow ::1;
        deny all;
        if ($http_{PURGE_HEADER.lower().replace("-", "_")} != "{purge_key}") {{ return 403; }}
        proxy_cache_purge {CACHE_ZONE} $object;
    }}

    location / {{
{headers}        return 403;
    }}
    }}
}}
"""


class Edge(Component):
    """One nginx edge (the CDN stand-in of one ``cdn_strategy`` provider)."""

    def __init__(self, config: Config, provider_key: str, listen_host: str | None = None):
        self.name = edge_name(provider_key)
        super().__init__(config)
        self.provider_key = provider_key
        self.listen_host = listen_host
        self.port = config.cdn.providers[provider_key].edge_port
        self.conf_path = self.dir / "nginx.conf"
        self.cache_dir = cache_dir(config, provider_key)
        self.access_log = access_log_path(config, provider_key)

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ports(self) -> list[tuple[str, int]]:
        return [(self.name, self.port)]

    def _run_as(self) -> tuple[str, str] | None:
        """As root, nginx's workers would drop to 'nobody' and lose the state dir: keep the caller's user."""
        if os.geteuid() != 0:
            return None
        return pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name

    def _render(self) -> str:
        from framelog.processors.tokens import load_or_create_secret

        return render_config(self.config, self.provider_key, self.dir, secret=load_or_create_secret(self.config),
                             run_as=self._run_as(), listen_host=self.listen_host)

    def _write_config(self, text: str) -> None:
        tmp = self.conf_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # holds the edge keys
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf_path)

    def prepare(self) -> None:
        if not PURGE_MODULE.exists():
            raise StackError(self.name, f"{PURGE_MODULE} missing: scripts/bootstrap.sh installs "
                                        f"libnginx-mod-http-cache-purge")
        for sub in ("cache", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        rotate_log(self.access_log)
        self._write_config(self._render())

    def launch(self) -> bool:
        """Spawn nginx; a running edge whose configuration changed (ports, lifetimes, secret) is reloaded."""
        pid = self.pid()
        if pid is not None:
            text = self._render()
            try:
                current = self.conf_path.read_text()
            except OSError:
                current = ""
            if text != current:
                self._write_config(text)
                os.kill(pid, signal.SIGHUP)      # the master re-reads it; workers finish their requests
            return False
        return super().launch()

    def command(self) -> list[str]:
        return [nginx_binary(), "-p", f"{self.dir}/", "-e", "stderr", "-c", str(self.conf_path),
                "-g", "daemon off;"]

    def check_health(self) -> None:
        with urllib.request.urlopen(f"{self.address}{HEALTH_PATH}", timeout=HEALTH_TIMEOUT) as r:
            if r.status != 200:
                raise ConnectionError(f"{HEALTH_PATH} answered {r.status}")

    def after_healthy(self) -> None:
        allow_edge_reads(self.config)

    def status(self) -> dict:
        info = super().status()
        info["provider"] = self.provider_key
        info["cache"] = str(self.cache_dir)
        return info


def edge_read_policy_statement(bucket: str, secret: bytes) -> dict:
    """GetObject on the prefixes the edges serve, nothing else, and only with the edges' Referer token."""
    return {"Sid": POLICY_SID, "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/{kind}/*" for kind in EDGE_KINDS],
            "Condition": {"StringEquals": {"aws:Referer": origin_token(secret)}}}


def allow_edge_reads(config: Config) -> None:
    """Put (or refresh) the edges' statement in the bucket policy, keeping any other statement."""
    from botocore.exceptions import ClientError

    from framelog.processors.tokens import load_or_create_secret
    from framelog.s3 import s3_client

    client = s3_client(config, connect_timeout=2, read_timeout=5, max_attempts=2)
    bucket = config.object_storage.bucket
    try:
        policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("NoSuchBucketPolicy", "404", "NotFound"):
            raise
        policy = {"Version": "2012-10-17", "Statement": []}
    statements = [s for s in policy.get("Statement", []) if s.get("Sid") != POLICY_SID]
    policy["Statement"] = statements + [edge_read_policy_statement(bucket, load_or_create_secret(config))]
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def edges(config: Config) -> list[Edge]:
    """One Edge per configured CDN provider, in configuration order."""
    return [Edge(config, key) for key in config.cdn.providers]
