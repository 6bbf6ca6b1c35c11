"""The two CDN edges and their origin shield: nginx caching reverse proxies in front of the S3 origin.

One ``Edge`` per ``cdn_strategy`` provider (the seed's primary and secondary
CDN), each an nginx master process on its configured ``edge_port`` with its
own configuration, proxy cache, access log and error log under
``<state>/edge-<provider>/``. What an edge does:

* ``GET|HEAD /s/<sig>/<expires>/{hls|thumbnails}/<video_id>/<file>`` and
  ``/s/<sig>/<expires>/videos/<yyyy>/<mm>/<quality>/<video_id>.mp4`` (the
  progressive MP4 at the seed's CDN path; byte ranges served from the cache):
  checks the path signature with ``secure_link`` (processors/edge_signing.py)
  and refuses unsigned, forged, expired or other-video requests with 403; then
  serves the object from its cache or fetches it from the origin shield. Cache
  lifetimes per file type come from ``caching_rules`` (``cache_control.edge_ttl``);
  the origin's Cache-Control (stored with each object) reaches the browser.
  The cache key is the object key (``/hls/<id>/…``), so every viewer's
  signature shares one cached copy.
* ``/_purge/<object key>``: removes one cached object (ngx_cache_purge), only
  from loopback and only with the ``X-Framelog-Purge`` token.
* ``/healthz``: 200 while the edge runs.
* protection (``edge_protection``; stand-ins for the seed's DDoS protection,
  WAF and bot management): per-client request rate and concurrent-request
  limits (``limit_req``/``limit_conn``, over the limit: ``refused_status``),
  header size limits, only GET/HEAD (PURGE-like ``/_purge`` from loopback with
  the token), only the signed path shapes; no query string, body or client
  header but the ones set here reaches the shield.

The origin shield (``origin_shield``; seed: primary_cdn's "Origin shield",
the "Origin Cache" level) is one more nginx cache between both edges and the
bucket: an edge miss is served from it, and only its own miss reaches S3. It
keeps each object for the level's ttl (7 d) or the object type's
``caching_rules`` lifetime if shorter, answers only requests carrying the
edges' origin token (it stands where the origin stood), and is purged with
the edges (``/_purge``, same token).

The origin is read without S3 credentials: after start the edge puts a bucket
policy allowing ``s3:GetObject`` on ``hls/*`` and ``thumbnails/*`` only (no
list, no writes, no ``keys/`` or uploads), and only to requests carrying the
edges' ``Referer`` token (``edge_signing.origin_token``, CloudFront's
custom-origin pattern: SeaweedFS evaluates ``aws:Referer``); nginx passes only
GET and HEAD. Origin headers that only describe the store (``Seaweed-X-Amz-*``,
request ids) never reach a viewer.
"""
from __future__ import annotations

import abc
import grp
import json
import os
import pwd
import shutil
import signal
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from framelog.core.config import CdnConfig, Config, ObjectStorageConfig
from framelog.processors import cache_control as cc
from framelog.processors.edge_signing import (
    EDGE_KINDS,
    PREFIX_KINDS,
    SIGNED_PREFIX,
    VIDEO_FILE_PATTERN,
    VIDEO_FILES,
    edge_secret,
    origin_token,
    purge_token,
)
from framelog.processors.public_urls import KEY_PATH_PREFIX, key_url_base
from framelog.sinks.edges.protocol import (
    ACCESS_LOG_NAME,
    HEALTH_PATH,
    INTERNAL_PATH,
    LOG_FORMAT,
    PURGE_HEADER,
    PURGE_PATH,
    SHIELD_CACHE_HEADER,
    SHIELD_NAME,
    edge_name,
    shield_address,
)
from framelog.stack.process import Component, StackError, rotate_log

PURGE_MODULE = Path("/usr/lib/nginx/modules/ngx_http_cache_purge_module.so")
CACHE_ZONE = "edge"
SHIELD_CACHE_ZONE = "shield"
CLIENT_ZONE_SIZE = "10m"             # ~160k client addresses per limit zone
CACHE_KEYS_ZONE_SIZE = "10m"        # ~80k keys
CACHE_MAX_SIZE = "2g"
CACHE_INACTIVE = "30d"              # the longest caching_rules lifetime; expiry itself is per type
POLICY_SID = "FramelogEdgeRead"
HEALTH_TIMEOUT = 2.0
ORIGIN_HIDDEN_HEADERS = ("x-amz-request-id", "x-amz-id-2", "Seaweed-X-Amz-Owner", "Seaweed-X-Amz-ETag",
                         "Set-Cookie", "Vary", "Access-Control-Allow-Origin",
                         "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                         "Access-Control-Expose-Headers", "Access-Control-Max-Age", "Access-Control-Allow-Credentials",
                         SHIELD_CACHE_HEADER)
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


def _suffix_groups() -> dict[tuple[str, str], list[str]]:
    """(kind, caching_rules file type) -> object suffixes, from processors/cache_control's mapping.

    Under ``videos/`` only the progressive MP4 (``video_files``) is served.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for suffix in cc.CONTENT_TYPES:
        for kind in EDGE_KINDS:
            file_type = cc.file_type_for_key(f"{kind}/v/f{suffix}")
            if file_type is None or file_type == cc.HLS_KEYS or (kind == VIDEO_FILES and file_type != cc.VIDEO_FILES):
                continue
            groups.setdefault((kind, file_type), []).append(suffix.lstrip("."))
    return groups


def _regex_alternation(words: list[str]) -> str:
    return "|".join(w.replace(".", r"\.") for w in sorted(words))


def _nginx_string(value: str) -> str:
    if any(c in value for c in "\"\\$;{}\n"):
        raise ValueError(f"value not safe inside an nginx string: {value!r}")
    return value


def _object_shapes() -> str:
    """The object paths either tier serves (regex, leading '/'): a video's prefix of one kind, or its MP4."""
    prefixes = "|".join(PREFIX_KINDS)
    return f"/(?:(?:{prefixes})/[A-Za-z0-9_-]{{1,64}}/{_OBJECT_CHARS}+|{VIDEO_FILE_PATTERN})"


def _origin_addr(object_storage: ObjectStorageConfig, component: str) -> str:
    origin = urlsplit(object_storage.endpoint_url)
    if origin.scheme != "http" or not origin.hostname:
        raise StackError(component, f"object_storage.endpoint_url must be http://host:port for the local "
                                    f"edges, got {object_storage.endpoint_url!r}")
    return _nginx_string(f"{origin.hostname}:{origin.port or 80}")


def _http_head(cdn: CdnConfig, directory: Path, run_as: tuple[str, str] | None, comment: str) -> str:
    """What both tiers' nginx.conf start with: process, paths, the JSON access-log format."""
    user = f"user {run_as[0]} {run_as[1]};\n" if run_as else ""
    d = directory
    return f"""# {comment}; generated by stack/nginx.py, do not edit
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
        '"request_time":$request_time,"upstream_time":"$upstream_response_time",'
        '"upstream_status":"$upstream_status","client":"$remote_addr","args":"$args"}}';
    proxy_connect_timeout {ORIGIN_CONNECT_TIMEOUT};
    proxy_read_timeout {ORIGIN_READ_TIMEOUT};
    client_max_body_size {cdn.protection.max_body};
"""


def _proxy_common(pass_to: str, host: str, origin_key: str, zone: str, status_header: str, extra: str) -> str:
    """A cached GET/HEAD to the next tier: only the headers set here go up; the cache key is the object key."""
    return (
        "        limit_except GET HEAD { deny all; }\n"
        f"        proxy_pass {pass_to};\n"
        "        proxy_http_version 1.1;\n"
        '        proxy_set_header Connection "";\n'
        f"        proxy_set_header Host {host};\n"
        '        proxy_set_header Authorization "";\n'
        '        proxy_set_header Cookie "";\n'
        f'        proxy_set_header Referer "{origin_key}";\n'          # the bucket policy's condition
        # CORS is the edge's to answer: the origin would add its own (a second, per-origin
        # Access-Control-Allow-Origin, which browsers refuse) and a Vary: Origin into the cache
        '        proxy_set_header Origin "";\n'
        '        proxy_set_header Access-Control-Request-Method "";\n'
        '        proxy_set_header Access-Control-Request-Headers "";\n'
        "        proxy_pass_request_body off;\n"
        '        proxy_set_header Content-Length "";\n'
        "        proxy_force_ranges on;\n"
        + "".join(f"        proxy_hide_header {h};\n" for h in ORIGIN_HIDDEN_HEADERS) +
        f"        proxy_cache {zone};\n"
        "        proxy_cache_key $object;\n"
        "        proxy_cache_lock on;\n"
        "        proxy_cache_revalidate on;\n"
        "        proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;\n"
        f"        add_header {status_header} $upstream_cache_status always;\n" + extra)


def _typed_locations(prefix: str, proxy: str, ttl_of, guard: str = "", extra_of=lambda file_type: "") -> str:
    """One location per (kind, caching_rules file type): its own cache lifetime, ``ttl_of(file_type)`` seconds."""
    typed = []
    for (kind, file_type), suffixes in sorted(_suffix_groups().items()):
        ttl = ttl_of(file_type)
        caching = (f"        proxy_ignore_headers Cache-Control Expires Set-Cookie X-Accel-Expires Vary;\n"
                   f"        proxy_cache_valid 200 {ttl}s;\n") if ttl > 0 else \
            "        proxy_no_cache 1;\n        proxy_cache_bypass 1;\n"
        shape = (VIDEO_FILE_PATTERN[:-len("\\.mp4")] if kind == VIDEO_FILES
                 else f"{kind}/[A-Za-z0-9_-]{{1,64}}/{_OBJECT_CHARS}+")
        pattern = f"^{prefix}(?<object>/{shape}\\.(?:{_regex_alternation(suffixes)}))$"
        typed.append(f"    # {file_type}: caching_rules.{file_type} ({ttl}s)\n"
                     f'    location ~ "{pattern}" {{\n' + guard + proxy + caching + extra_of(file_type) + "    }\n")
    return "".join(typed)


def _purge_location(zone: str, purge_key: str) -> str:
    return f"""    location ~ "^{PURGE_PATH}(?<object>/(?:{"|".join(EDGE_KINDS)})/{_OBJECT_CHARS}+)$" {{
        allow 127.0.0.1;
        allow ::1;
        deny all;
        if ($http_{PURGE_HEADER.lower().replace("-", "_")} != "{purge_key}") {{ return 403; }}
        proxy_cache_purge {zone} $object;
    }}
"""


def _quoted_uri_attribute(prefix: str) -> str:
    """``'URI="<prefix>'`` as a single-quoted nginx string (the prefix must hold nothing nginx would read)."""
    if any(c in prefix for c in "'\"\\$;{}\n \t"):
        raise ValueError(f"URL not safe inside an nginx string: {prefix!r}")
    return f"'URI=\"{prefix}'"


def key_uri_rewrite(config: Config) -> str:
    """nginx directives that point the key URIs of a playlist at the public key endpoint as it is served.

    Stored playlists name the key by a host-less path (``hls_config.key_uri_base``); playlists packaged
    before that name the local API's address. Both become ``delivery.key_url_base`` (the cached copy
    stays as stored: the rewrite is an output filter), so a domain change needs no re-transcode.
    """
    public = key_url_base(config.delivery, config.stack) + "/"
    stored = [config.hls.key_uri_base.rstrip("/") + "/",
              f"http://{config.stack.host}:{config.stack.api_port}{KEY_PATH_PREFIX}/"]   # packaged before the rewrite
    lines = ['        proxy_set_header Accept-Encoding "";\n',      # the filter reads the body as stored
             "        sub_filter_types *;\n", "        sub_filter_once off;\n"]
    lines += [f"        sub_filter {_quoted_uri_attribute(old)} {_quoted_uri_attribute(public)};\n"
              for old in dict.fromkeys(stored) if old != public]
    return "".join(lines) if len(lines) > 3 else ""


def render_config(config: Config, provider_key: str, directory: Path, *, secret: bytes,
                  run_as: tuple[str, str] | None = None, listen_host: str | None = None) -> str:
    """The nginx.conf of one edge (pure: tests read it without starting nginx).

    It listens on ``listen_host`` (default ``stack.host``: loopback locally; a
    container binds every interface) and fetches from the origin shield.
    """
    provider = config.cdn.providers[provider_key]
    guard = config.cdn.protection
    host = _nginx_string(listen_host or config.stack.host)
    shield_addr = _nginx_string(shield_address(config.stack, config.cdn))
    edge_key = edge_secret(secret)
    origin_key = origin_token(secret)
    d = directory
    headers = (f'        add_header X-Edge "{provider_key}" always;\n'
               '        add_header Access-Control-Allow-Origin "*" always;\n'
               '        add_header Access-Control-Expose-Headers "X-Cache-Status, X-Edge" always;\n')
    # a player that adds headers to its requests (hls.js xhrSetup) makes the browser ask first
    preflight = ('        add_header Access-Control-Allow-Methods "GET, HEAD, OPTIONS" always;\n'
                 '        add_header Access-Control-Allow-Headers $http_access_control_request_headers always;\n'
                 f'        add_header Access-Control-Max-Age {PREFLIGHT_MAX_AGE} always;\n')
    proxy = "        internal;\n" + _proxy_common("http://shield$object", shield_addr, origin_key, CACHE_ZONE,
                                                    "X-Cache-Status", headers)
    rewrite = key_uri_rewrite(config)
    rules = config.cdn.caching_rules
    typed = _typed_locations(INTERNAL_PATH, proxy, lambda file_type: cc.edge_ttl(file_type, rules),
                             extra_of=lambda file_type: rewrite if file_type == cc.HLS_PLAYLISTS else "")
    kinds = "|".join(PREFIX_KINDS)
    signed = f"/{SIGNED_PREFIX}/(?<sig>[A-Za-z0-9_-]{{22}})/(?<expires>[0-9]{{1,12}})"
    check = (f"{headers}{preflight}        if ($request_method = OPTIONS) {{ return 204; }}\n"
             "        if ($request_method !~ ^(GET|HEAD)$) { return 403; }\n"
             "        secure_link $sig,$expires;\n")
    verdict = ('        if ($secure_link = "") { return 403; }\n'
               '        if ($secure_link = "0") { return 403; }\n'
               # the object path only: a query string never reaches the shield (nor splits the cache)
               f'        rewrite "^/{SIGNED_PREFIX}/[^/]+/[0-9]+(/.*)$" {INTERNAL_PATH}$1? last;\n')
    return _http_head(config.cdn, d, run_as, f"framelog edge {provider_key} ({provider.provider} stand-in)") + f"""
    proxy_cache_path {d}/cache levels=1:2 keys_zone={CACHE_ZONE}:{CACHE_KEYS_ZONE_SIZE}
                     max_size={CACHE_MAX_SIZE} inactive={CACHE_INACTIVE} use_temp_path=off;
    # edge_protection (the seed's DDoS protection / WAF / bot management): per client address, counted on the
    # requests that get past the signature check (the others are refused before any work); health and purge
    # are not counted
    map $uri $limited_client {{
        ~^{INTERNAL_PATH}/ $binary_remote_addr;
        default "";
    }}
    limit_req_zone $limited_client zone=clients:{CLIENT_ZONE_SIZE} rate={guard.requests_per_second}r/s;
    limit_conn_zone $limited_client zone=client_conns:{CLIENT_ZONE_SIZE};
    limit_req_status {guard.refused_status};
    limit_conn_status {guard.refused_status};
    client_header_buffer_size {guard.header_buffer};
    large_client_header_buffers {guard.large_header_buffers} {guard.large_header_buffer_size};
    upstream shield {{
        server {shield_addr};
        keepalive 8;
    }}
    server {{
        listen {host}:{provider.edge_port};
        access_log {d}/{ACCESS_LOG_NAME} {LOG_FORMAT};
        limit_req zone=clients burst={guard.burst} nodelay;
        limit_conn client_conns {guard.connections_per_client};

    location = {HEALTH_PATH} {{
        access_log off;
        default_type text/plain;
{headers}        return 200 "ok\\n";
    }}

    # signed object URLs: /{SIGNED_PREFIX}/<sig>/<expires>/<kind>/<video_id>/<file>; scope /<kind>/<video_id>/
    location ~ "^{signed}/(?<kind>{kinds})/(?<vid>[A-Za-z0-9_-]{{1,64}})/{_OBJECT_CHARS}+$" {{
{check}        secure_link_md5 "$expires/$kind/$vid/ {edge_key}";
{verdict}    }}

    # the progressive MP4 at the seed's CDN path:
    # /{SIGNED_PREFIX}/<sig>/<expires>/videos/<yyyy>/<mm>/<quality>/<id>.mp4;
    # scope: that one file
    location ~ "^{signed}/(?<video_file>{VIDEO_FILE_PATTERN})$" {{
{check}        secure_link_md5 "$expires/$video_file {edge_key}";
{verdict}    }}

{typed}
    # AES keys are the key endpoint's to hand out, never an edge's, wherever one was put
    location ~ "^{INTERNAL_PATH}/.*\\.key$" {{
        internal;
{headers}        return 403;
    }}

    # any other object under the served prefixes: the origin's own Cache-Control decides
    location ~ "^{INTERNAL_PATH}(?<object>/(?:{kinds})/{_OBJECT_CHARS}+)$" {{
{proxy}    }}

{_purge_location(CACHE_ZONE, purge_token(secret))}
    location / {{
{headers}        return 403;
    }}
    }}
}}
"""


def shield_ttl(file_type: str, cdn: CdnConfig) -> int:
    """Seconds the shield keeps an object: the origin level's ttl, never longer than the type's caching rule."""
    return min(int(cdn.shield.ttl), cc.edge_ttl(file_type, cdn.caching_rules))


def render_shield_config(config: Config, directory: Path, *, secret: bytes,
                         run_as: tuple[str, str] | None = None, listen_host: str | None = None) -> str:
    """The nginx.conf of the origin shield (pure). Only the edges' origin token gets an answer."""
    host = _nginx_string(listen_host or config.stack.host)
    origin_addr = _origin_addr(config.object_storage, SHIELD_NAME)
    bucket = _nginx_string(config.object_storage.bucket)
    origin_key = origin_token(secret)
    d = directory
    # the shield stands where the origin stood: it answers the edges (their origin token) and nobody else
    guard = f'        if ($http_referer != "{origin_key}") {{ return 403; }}\n'
    proxy = _proxy_common(f"http://origin/{bucket}$object", origin_addr, origin_key, SHIELD_CACHE_ZONE,
                          SHIELD_CACHE_HEADER, "")
    typed = _typed_locations("", proxy, lambda file_type: shield_ttl(file_type, config.cdn), guard)
    level = config.cdn.shield
    return _http_head(config.cdn, d, run_as, f"framelog origin shield ({level.cache_level}, {int(level.ttl)}s)") + f"""
    proxy_cache_path {d}/cache levels=1:2 keys_zone={SHIELD_CACHE_ZONE}:{CACHE_KEYS_ZONE_SIZE}
                     max_size={CACHE_MAX_SIZE} inactive={int(level.ttl)}s use_temp_path=off;
    upstream origin {{
        server {origin_addr};
        keepalive 8;
    }}
    server {{
        listen {host}:{level.shield_port};
        access_log {d}/{ACCESS_LOG_NAME} {LOG_FORMAT};

    location = {HEALTH_PATH} {{
        access_log off;
        default_type text/plain;
        return 200 "ok\\n";
    }}

    location ~ "\\.key$" {{
        return 403;
    }}

{typed}
    # any other object under the served shapes: the origin's own Cache-Control decides
    location ~ "^(?<object>{_object_shapes()})$" {{
{guard}{proxy}    }}

{_purge_location(SHIELD_CACHE_ZONE, purge_token(secret))}
    location / {{
        return 403;
    }}
    }}
}}
"""


class NginxCache(Component, abc.ABC):
    """One nginx cache process (an edge or the shield): its own config, cache, access log under the state dir."""

    port: int
    listen_host: str | None

    def __init__(self, config: Config):
        super().__init__(config)
        self.conf_path = self.dir / "nginx.conf"
        self.cache_dir = self.dir / "cache"
        self.access_log = self.dir / ACCESS_LOG_NAME

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

    @abc.abstractmethod
    def _render_with(self, secret: bytes) -> str:
        """This cache's nginx.conf, signed paths checked with ``secret`` (an edge's or the shield's)."""

    def _render(self) -> str:
        from framelog.processors.tokens import load_or_create_secret

        return self._render_with(load_or_create_secret(self.config.security, self.config.stack.state_dir))

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
        """Spawn nginx; a running one whose configuration changed (ports, lifetimes, secret) is reloaded."""
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
        info["cache"] = str(self.cache_dir)
        return info


class Edge(NginxCache):
    """One nginx edge (the CDN stand-in of one ``cdn_strategy`` provider)."""

    def __init__(self, config: Config, provider_key: str, listen_host: str | None = None):
        self.name = edge_name(provider_key)
        self.provider_key = provider_key
        self.listen_host = listen_host
        self.port = config.cdn.providers[provider_key].edge_port
        super().__init__(config)

    def _render_with(self, secret: bytes) -> str:
        return render_config(self.config, self.provider_key, self.dir, secret=secret, run_as=self._run_as(),
                             listen_host=self.listen_host)

    def status(self) -> dict:
        info = super().status()
        info["provider"] = self.provider_key
        return info


class OriginShield(NginxCache):
    """The origin shield: one nginx cache between the edges and the bucket (``origin_shield``)."""

    name = SHIELD_NAME

    def __init__(self, config: Config, listen_host: str | None = None):
        self.listen_host = listen_host
        self.port = config.cdn.shield.shield_port
        super().__init__(config)

    def _render_with(self, secret: bytes) -> str:
        return render_shield_config(self.config, self.dir, secret=secret, run_as=self._run_as(),
                                    listen_host=self.listen_host)


def edge_read_policy_statement(bucket: str, secret: bytes) -> dict:
    """GetObject on the prefixes the edges serve, nothing else, and only with the edges' Referer token."""
    return {"Sid": POLICY_SID, "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/{kind}/*" for kind in EDGE_KINDS],
            "Condition": {"StringEquals": {"aws:Referer": origin_token(secret)}}}


def allow_edge_reads(config: Config) -> None:
    """Put (or refresh) the edges' statement in the bucket policy, keeping any other statement."""
    from botocore.exceptions import ClientError

    from framelog.processors.tokens import load_or_create_secret
    from framelog.sinks.s3 import s3_client

    client = s3_client(config.object_storage, config.stack.state_dir, connect_timeout=2, read_timeout=5, max_attempts=2)
    bucket = config.object_storage.bucket
    try:
        policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("NoSuchBucketPolicy", "404", "NotFound"):
            raise
        policy = {"Version": "2012-10-17", "Statement": []}
    statements = [s for s in policy.get("Statement", []) if s.get("Sid") != POLICY_SID]
    secret = load_or_create_secret(config.security, config.stack.state_dir)
    policy["Statement"] = statements + [edge_read_policy_statement(bucket, secret)]
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def shield(config: Config) -> OriginShield:
    return OriginShield(config)


def edges(config: Config) -> list[Edge]:
    """One Edge per configured CDN provider, in configuration order."""
    return [Edge(config, key) for key in config.cdn.providers]
