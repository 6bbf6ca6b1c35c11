"""Load and validate framelog.yaml into typed, frozen dataclasses.

The YAML file is the only place the seed's numbers live. Loading checks every
key it knows and fails with ``ConfigError`` naming the dotted path of the bad
key (``processing_pipeline.stages[1].timeout: ...``), so a typo is caught at
start, not in the middle of a transcode.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from framelog.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("framelog.yaml")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|k|K)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "k": 1000, "K": 1000, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_RESOLUTION = re.compile(r"^(\d+)x(\d+)$")
_BITRATE = re.compile(r"^(\d+)k$")
PROFILE_SUFFIX = "_profile"


def parse_duration(value: Any, path: str) -> float:
    """'30s' / '5m' / '1h' / '30d' / a number of seconds -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ConfigError(path, f"expected a duration like '30s', '5m', '1h' or '30d', got {value!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_size(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ConfigError(path, f"expected a size like '500MiB' or bytes, got {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def parse_bitrate(value: Any, path: str) -> int:
    """'5000k' -> 5_000_000 bits per second."""
    m = _BITRATE.match(str(value))
    if not m:
        raise ConfigError(path, f"expected a bitrate like '5000k', got {value!r}")
    return int(m.group(1)) * 1000


def parse_resolution(value: Any, path: str) -> tuple[int, int]:
    m = _RESOLUTION.match(str(value))
    if not m:
        raise ConfigError(path, f"expected a resolution like '1920x1080', got {value!r}")
    return int(m.group(1)), int(m.group(2))


class _Reader:
    """Reads one mapping of the YAML tree, remembering its dotted path for errors."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, Mapping):
            raise ConfigError(path or "<root>", f"expected a mapping, got {type(data).__name__}")
        self.data = data
        self.path = path

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise ConfigError(self._key(key), "missing required key")
            return default
        return self.data[key]

    def sub(self, key: str) -> _Reader:
        return _Reader(self.raw(key), self._key(key))

    def items(self, key: str) -> list[_Reader]:
        value = self.raw(key)
        if not isinstance(value, list) or not value:
            raise ConfigError(self._key(key), "expected a non-empty list")
        return [_Reader(v, f"{self._key(key)}[{i}]") for i, v in enumerate(value)]

    def str(self, key: str, default: Any = ...) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise ConfigError(self._key(key), f"expected a string, got {value!r}")
        return value

    def int(self, key: str, default: Any = ..., minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(self._key(key), f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(self._key(key), f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(self._key(key), f"must be <= {maximum}, got {value}")
        return value

    def float(self, key: str, default: Any = ..., minimum: float | None = None, maximum: float | None = None) -> float:
        value = self.raw(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(self._key(key), f"expected a number, got {value!r}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ConfigError(self._key(key), f"must be within [{minimum}, {maximum}], got {value}")
        return float(value)

    def bool(self, key: str, default: Any = ...) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self._key(key), f"expected true or false, got {value!r}")
        return value

    def duration(self, key: str, default: Any = ...) -> float:
        return parse_duration(self.raw(key, default), self._key(key))

    def size(self, key: str, default: Any = ...) -> int:
        return parse_size(self.raw(key, default), self._key(key))

    def bitrate(self, key: str) -> int:
        return parse_bitrate(self.raw(key), self._key(key))

    def resolution(self, key: str) -> tuple[int, int]:
        return parse_resolution(self.raw(key), self._key(key))

    def str_list(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.raw(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self._key(key), f"expected a list of strings, got {value!r}")
        return tuple(value)


# ---------------------------------------------------------------- sections

@dataclass(frozen=True)
class StackConfig:
    state_dir: Path
    host: str
    kafka_port: int
    kafka_controller_port: int
    seaweed_master_port: int
    seaweed_volume_port: int
    seaweed_filer_port: int
    seaweed_s3_port: int
    seaweed_admin_port: int
    api_port: int
    worker_metrics_port: int
    startup_timeout: float
    metrics_host: str = "127.0.0.1"    # where workers and the sink serve /metrics (0.0.0.0 in containers)


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str
    schema_registry_url: str
    default_partitions: int
    client_id: str
    security_protocol: str = "SASL_PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    principal: str = "admin"     # not in the YAML: what the process is (streams/kafka_auth.as_principal)


@dataclass(frozen=True)
class ObjectStorageConfig:
    endpoint_url: str
    bucket: str
    region: str
    access_key: str              # "" (the default): the identity's key pair from <state_dir>/credentials/s3.json
    secret_key: str
    vault_bucket: str = ""         # Object Lock bucket for tiers with a retention_lock ("": none)
    identity: str = "pipeline"     # which generated identity the process uses (core/service_credentials.py)


@dataclass(frozen=True)
class ClickHouseConfig:
    dsn: str
    database: str


RETENTION_LOCKS = ("none", "governance", "compliance")


@dataclass(frozen=True)
class StorageTier:
    name: str
    description: str
    storage_class: str
    retention_period: float       # seconds an object stays in the tier before any rule moves or deletes it
    price_per_gb_month: float
    restore_delay: float
    retention_lock: str = "none"  # "governance" / "compliance": S3 Object Lock in the vault bucket; "none"


@dataclass(frozen=True)
class TieringRule:
    """One seed rule; bounds left as None do not constrain."""
    name: str
    target_tier: str
    min_age_days: float | None = None
    max_age_days: float | None = None
    max_access_count: int | None = None
    min_idle_days: float | None = None   # popularity guard: not while watched within this many days


@dataclass(frozen=True)
class StageConfig:
    name: str
    timeout: float
    retry_attempts: int
    parallel_jobs: int = 1


@dataclass(frozen=True)
class TranscodingProfile:
    name: str
    width: int
    height: int
    bitrate: int
    codec: str

    @property
    def rendition(self) -> str:
        """The rung's name without the seed's ``_profile`` suffix ("1080p_profile" -> "1080p")."""
        return self.name[: -len(PROFILE_SUFFIX)] if self.name.endswith(PROFILE_SUFFIX) else self.name


@dataclass(frozen=True)
class PipelineConfig:
    stages: tuple[StageConfig, ...]
    transcoding_profiles: tuple[TranscodingProfile, ...]
    retry_backoff_initial: float
    retry_backoff_max: float
    kill_grace: float = 5.0     # SIGTERM -> SIGKILL of a timed-out job's children

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"unknown pipeline stage {name!r}")

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)


@dataclass(frozen=True)
class PriorityConfig:
    """processing_priorities: levels first to last, the default, per-workspace levels."""
    levels: tuple[str, ...]
    default: str
    workspaces: Mapping[str, str]

    def rank(self, priority: str) -> int:
        """0 for the first level; an unknown or empty priority ranks as the default."""
        return self.levels.index(priority if priority in self.levels else self.default)

    def resolve(self, requested: str | None, workspace: str | None = None) -> str:
        """The request's level if it names one, else the workspace's, else the default."""
        if requested:
            if requested not in self.levels:
                raise ValueError(f"unknown priority {requested[:40]!r}; expected one of {list(self.levels)}")
            return requested
        return self.workspaces.get(workspace or "", self.default)


@dataclass(frozen=True)
class UploadLimits:
    max_size: int
    max_duration: float
    audio_bitrate: int


@dataclass(frozen=True)
class CaptionsConfig:
    """Speech-to-text captions (pocketsphinx's bundled model; media.captions)."""
    enabled: bool
    language: str                # BCP 47 tag of the bundled model's language, e.g. "en-US"
    max_duration: float          # longer videos get no captions (CPU cost grows with the audio)
    max_recognition_time: float  # the recogniser is stopped after this long: no captions, the video goes on
    max_cue_duration: float
    max_cue_words: int


@dataclass(frozen=True)
class MediaConfig:
    x264_preset: str
    allow_4k_label: bool
    thumbnail_interval: float
    thumbnail_tile_width: int
    thumbnail_columns: int
    scene_threshold: float
    min_chapter: float
    black_min_duration: float
    silence_noise_db: float
    silence_min_duration: float
    quality_sample: float
    min_ssim_gain_db: float
    min_psnr_gain_db: float
    captions: CaptionsConfig


@dataclass(frozen=True)
class QualityLevel:
    """One rung of the ladder as encoded and streamed (see :func:`_ladder`)."""
    name: str
    width: int
    height: int
    bitrate: int
    bandwidth: int
    codec: str = "h264"


@dataclass(frozen=True)
class HlsConfig:
    """Segmenting settings plus the ladder.

    ``quality_levels`` is the ladder the encoder produces and the player is
    offered: one level per ``transcoding_profiles`` entry (see :func:`_ladder`);
    ``seed_levels`` are ``hls_config.quality_levels`` as written.
    """
    segment_duration: int
    playlist_type: str           # "VOD" or "EVENT"
    encryption: bool
    key_uri_base: str
    quality_levels: tuple[QualityLevel, ...]
    seed_levels: tuple[QualityLevel, ...] = ()


@dataclass(frozen=True)
class CdnProvider:
    key: str
    provider: str
    edge_port: int
    regions: tuple[str, ...]


@dataclass(frozen=True)
class RoutingRule:
    countries: tuple[str, ...]
    primary: str
    fallback: str


@dataclass(frozen=True)
class CacheRule:
    cache_duration: float
    browser_cache: float
    edge_cache: bool


@dataclass(frozen=True)
class OriginShield:
    """The nginx tier between the edges and the bucket (seed: "Origin shield", the "Origin Cache" level)."""
    shield_port: int
    cache_level: str       # the caching_strategy level whose ttl bounds what the shield keeps
    ttl: float             # that level's ttl, seconds


@dataclass(frozen=True)
class EdgeProtection:
    """Per-client limits and the request filter at the edges (seed: DDoS protection, WAF, bot management)."""
    requests_per_second: int
    burst: int
    connections_per_client: int
    refused_status: int
    header_buffer: int
    large_header_buffers: int
    large_header_buffer_size: int
    max_body: int


@dataclass(frozen=True)
class CdnConfig:
    providers: dict[str, CdnProvider]
    routing_rules: tuple[RoutingRule, ...]
    default_route: RoutingRule
    caching_rules: dict[str, CacheRule]
    shield: OriginShield
    protection: EdgeProtection


@dataclass(frozen=True)
class CacheLevel:
    name: str
    ttl: float
    content_types: tuple[str, ...]


@dataclass(frozen=True)
class TrendingConfig:
    """The seed's ``trending_content`` trigger and its "Geographic preloading" strategy."""
    window: float          # seconds of views counted (a hopping window ...)
    step: float            # ... advancing in steps of this many seconds
    min_views: int         # views in the window, from one country, that make a video trending there
    rewarm_after: float    # seconds before the same video is warmed again for the same country


@dataclass(frozen=True)
class CachingStrategy:
    levels: tuple[CacheLevel, ...]
    warming_triggers: tuple[str, ...]
    popular_view_count: int
    warm_first_segments: int
    trending: TrendingConfig


@dataclass(frozen=True)
class AbrConfig:
    check_interval: float
    bandwidth_history: int
    low_buffer_seconds: float
    switch_threshold: float


@dataclass(frozen=True)
class PlayerConfig:
    """The web player's reporting cadence (not in the seed; web/playback-events.js)."""
    heartbeat_interval: float        # a progress event this often while playing
    event_flush_interval: float      # queued events go to POST /v1/events at least this often
    event_batch_max: int             # ... or as soon as this many wait


@dataclass(frozen=True)
class AnalyticsConfig:
    raw_events_ttl: float
    default_timeframe: float
    max_timeframe: float
    completion_threshold: float
    sink_batch_max_rows: int
    sink_batch_max_age: float
    sink_insert_threads: int = 1


@dataclass(frozen=True)
class AnalystSqlConfig:
    """Guard bounds, engine limits and isolation of analysts' SQL (``analyst_sql:``)."""
    max_sql_chars: int
    max_nesting: int
    max_concurrent_queries: int
    retry_after: float
    max_execution_time: float
    max_memory_usage: int
    max_result_rows: int
    max_result_bytes: int
    max_rows_to_read: int
    max_threads: int
    os_thread_priority: int


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class SecurityConfig:
    token_secret: str
    stream_url_ttl: float
    share_token_ttl: float
    default_visibility: str          # of a video whose upload named none (public / private / share_link)


@dataclass(frozen=True)
class TrustedIssuer:
    """A customer's back end allowed to mint user tokens: its issuer, public keys and grantable scopes."""
    issuer: str
    jwks_file: Path
    scopes: tuple[str, ...]
    subject_prefix: str = ""         # its sub and ws must start with this: one tenant cannot name another's users


@dataclass(frozen=True)
class AuthConfig:
    """API tokens (JWTs, see processors/identity.py) and the operator listener."""
    issuer: str
    audience: str
    keyring_file: str                # "" = <state_dir>/keyring.json
    keyring_json: str                # FRAMELOG_KEYRING: the keyring itself (read-only), for deployments
    token_ttl: float
    max_token_lifetime: float
    max_token_bytes: int
    clock_leeway: float
    anonymous_upload: bool
    anonymous_upload_ttl: float
    ops_host: str
    ops_port_offset: int
    trusted_issuers: tuple[TrustedIssuer, ...]


@dataclass(frozen=True)
class WebhooksConfig:
    """Webhook delivery (pipeline/webhooks.py): retries, limits and which private networks may be targets."""
    retry_backoff_initial: float
    retry_backoff_max: float
    retry_jitter: float
    max_attempts: int
    request_timeout: float
    max_in_flight_per_endpoint: int
    delivery_threads: int
    max_payload_bytes: int
    deliveries_retention: float
    max_endpoints_per_owner: int
    allow_private_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveProgressConfig:
    """GET /videos/{id}/events (api/live.py)."""
    heartbeat_interval: float
    max_stream_duration: float


@dataclass(frozen=True)
class ApiProtectionConfig:
    """Per-client limits for every API route (api/protection.py) and the process's connection ceiling."""
    requests_per_second: float
    burst: int
    max_concurrent_per_client: int
    max_concurrent_requests: int


@dataclass(frozen=True)
class PlaybackTrustConfig:
    """How far playback events are believed (api/event_trust.py): sessions, rate limits, proxies, body limits."""
    session_ttl: float
    renew_at_fraction: float
    trusted_proxies: tuple[str, ...]
    session_rate: float
    session_burst: int
    client_rate: float
    client_burst: int
    rate_limit_entries: int
    max_body_bytes: int
    max_decoded_bytes: int
    max_gzip_members: int
    max_events: int


@dataclass(frozen=True)
class Config:
    source: Path
    stack: StackConfig
    kafka: KafkaConfig
    object_storage: ObjectStorageConfig
    clickhouse: ClickHouseConfig
    storage_tiers: dict[str, StorageTier]
    tiering_rules: tuple[TieringRule, ...]
    tiering_default_tier: str
    tiering_evaluation_interval: float
    tiering_restore_tier: str
    tiering_restore_hold: float
    pipeline: PipelineConfig
    priorities: PriorityConfig
    upload_limits: UploadLimits
    media: MediaConfig
    hls: HlsConfig
    cdn: CdnConfig
    caching: CachingStrategy
    abr: AbrConfig
    player: PlayerConfig
    analytics: AnalyticsConfig
    metrics: dict[str, MetricSpec]
    security: SecurityConfig
    analyst_sql: AnalystSqlConfig
    auth: AuthConfig
    webhooks: WebhooksConfig
    live_progress: LiveProgressConfig
    playback_trust: PlaybackTrustConfig
    api_protection: ApiProtectionConfig
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def ops_port(self) -> int:
        """The operator listener's port (/metrics, /docs): next to the API's, so every stack moves both."""
        return self.stack.api_port + self.auth.ops_port_offset

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse.dsn or f"chdb://{(self.stack.state_dir / 'clickhouse').resolve()}"


# ---------------------------------------------------------------- builders

def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _stack(r: _Reader) -> StackConfig:
    ports = {k: r.int(k, minimum=1) for k in (
        "kafka_port", "kafka_controller_port", "seaweed_master_port", "seaweed_volume_port",
        "seaweed_filer_port", "seaweed_s3_port", "seaweed_admin_port", "api_port", "worker_metrics_port")}
    return StackConfig(
        state_dir=Path(_env("FRAMELOG_STATE_DIR", r.str("state_dir"))).absolute(),
        host=r.str("host"), startup_timeout=r.duration("startup_timeout"),
        metrics_host=_env("FRAMELOG_METRICS_HOST", r.str("metrics_host", r.str("host"))), **ports)


KAFKA_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
KAFKA_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
S3_IDENTITIES = ("pipeline", "media")


def _kafka_security(r: _Reader) -> tuple[str, str]:
    """(protocol, mechanism): only authenticated protocols, only SCRAM (no plaintext passwords on the wire)."""
    protocol, mechanism = r.str("protocol"), r.str("mechanism")
    if protocol not in KAFKA_PROTOCOLS:
        raise ConfigError(f"{r.path}.protocol", f"expected one of {list(KAFKA_PROTOCOLS)}, got {protocol!r}")
    if mechanism not in KAFKA_MECHANISMS:
        raise ConfigError(f"{r.path}.mechanism", f"expected one of {list(KAFKA_MECHANISMS)}, got {mechanism!r}")
    return protocol, mechanism


def _s3_identity(r: _Reader) -> str:
    if r.has("access_key") or r.has("secret_key"):
        raise ConfigError(f"{r.path}.access_key", "S3 credentials do not belong in the configuration file: stack up "
                                                  "generates them; set FRAMELOG_S3_ACCESS_KEY/SECRET_KEY to override")
    identity = r.str("identity")
    if identity not in S3_IDENTITIES:
        raise ConfigError(f"{r.path}.identity", f"expected one of {list(S3_IDENTITIES)}, got {identity!r}")
    return identity


def _tiers(r: _Reader) -> dict[str, StorageTier]:
    tiers = {}
    for name in r.data:
        t = r.sub(name)
        tiers[name] = StorageTier(
            name=name, description=t.str("description", ""), storage_class=t.str("storage_class"),
            retention_period=t.duration("retention_period"),
            price_per_gb_month=t.float("price_per_gb_month", minimum=0),
            restore_delay=t.duration("restore_delay", "0s"),
            retention_lock=t.str("retention_lock", "none"))
        if tiers[name].retention_lock not in RETENTION_LOCKS:
            raise ConfigError(f"{t.path}.retention_lock", f"{tiers[name].retention_lock!r} is not one of "
                                                          f"{', '.join(RETENTION_LOCKS)}")
    if not tiers:
        raise ConfigError(r.path, "at least one storage tier is required")
    return tiers


def _tiering_rules(items: list[_Reader], tiers: Mapping[str, StorageTier]) -> tuple[TieringRule, ...]:
    rules = []
    for r in items:
        target = r.str("target_tier")
        if target not in tiers:
            raise ConfigError(f"{r.path}.target_tier", f"unknown tier {target!r}; known: {sorted(tiers)}")
        rules.append(TieringRule(
            name=r.str("name"), target_tier=target,
            min_age_days=r.float("min_age_days", None, minimum=0) if r.has("min_age_days") else None,
            max_age_days=r.float("max_age_days", None, minimum=0) if r.has("max_age_days") else None,
            max_access_count=r.int("max_access_count", None, minimum=0) if r.has("max_access_count") else None,
            min_idle_days=r.float("min_idle_days", None, minimum=0) if r.has("min_idle_days") else None))
    return tuple(rules)


def _pipeline(r: _Reader) -> PipelineConfig:
    stages = tuple(
        StageConfig(name=s.str("name"), timeout=s.duration("timeout"),
                    retry_attempts=s.int("retry_attempts", minimum=0),
                    parallel_jobs=s.int("parallel_jobs", 1, minimum=1))
        for s in r.items("stages"))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"{r.path}.stages", f"stage names must be unique, got {names}")
    from framelog.processors.media.ffmpeg_commands import VIDEO_ENCODERS  # the codecs framelog can encode

    profiles = []
    for p in r.items("transcoding_profiles"):
        w, h = p.resolution("resolution")
        name, codec = p.str("name"), p.str("codec").lower()
        if codec not in VIDEO_ENCODERS:
            raise ConfigError(f"{p.path}.codec", f"{p.raw('codec')!r} is not supported for profile {name!r} "
                                                 f"(supported: {', '.join(sorted(VIDEO_ENCODERS))})")
        profiles.append(TranscodingProfile(name, w, h, p.bitrate("bitrate"), codec))
    renditions = [(p.rendition.lower(), i) for i, p in enumerate(profiles)]
    for n, (rendition, i) in enumerate(renditions):
        if any(rendition == other for other, _ in renditions[:n]):
            raise ConfigError(f"{r.path}.transcoding_profiles[{i}].name",
                              f"{profiles[i].name!r} names the rung {profiles[i].rendition!r} twice")
    return PipelineConfig(stages, tuple(profiles), r.duration("retry_backoff_initial"),
                          r.duration("retry_backoff_max"), r.duration("kill_grace"))


_PRIORITY = re.compile(r"^[a-z][a-z0-9_]{0,15}$")


def _priorities(r: _Reader) -> PriorityConfig:
    levels = r.str_list("levels")
    for i, level in enumerate(levels):
        if not _PRIORITY.match(level) or level == "dlq":
            raise ConfigError(f"{r.path}.levels[{i}]", f"{level!r} must be a short lower-case name (not 'dlq')")
    if not levels or len(set(levels)) != len(levels):
        raise ConfigError(f"{r.path}.levels", f"expected distinct levels, got {list(levels)}")
    default = r.str("default")
    if default not in levels:
        raise ConfigError(f"{r.path}.default", f"{default!r} is not one of the levels {list(levels)}")
    ws = r.sub("workspaces")
    for name, level in ws.data.items():
        if level not in levels:
            raise ConfigError(f"{ws.path}.{name}", f"{level!r} is not one of the levels {list(levels)}")
    return PriorityConfig(tuple(levels), default, dict(ws.data))


def _media(r: _Reader) -> MediaConfig:
    t, a, o, c = r.sub("thumbnails"), r.sub("analysis"), r.sub("optimization"), r.sub("captions")
    return MediaConfig(
        x264_preset=r.str("x264_preset"), allow_4k_label=r.bool("allow_4k_label"),
        thumbnail_interval=t.duration("interval"), thumbnail_tile_width=t.int("tile_width", minimum=16),
        thumbnail_columns=t.int("columns", minimum=1),
        scene_threshold=a.float("scene_threshold", minimum=0, maximum=1), min_chapter=a.duration("min_chapter"),
        black_min_duration=a.duration("black_min_duration"), silence_noise_db=a.float("silence_noise_db"),
        silence_min_duration=a.duration("silence_min_duration"),
        quality_sample=o.duration("quality_sample"), min_ssim_gain_db=o.float("min_ssim_gain_db", minimum=0),
        min_psnr_gain_db=o.float("min_psnr_gain_db", minimum=0),
        captions=CaptionsConfig(c.bool("enabled"), c.str("language"), c.duration("max_duration"),
                                c.duration("max_recognition_time"), c.duration("max_cue_duration"),
                                c.int("max_cue_words", minimum=1)))


def _hls(r: _Reader, profiles: tuple[TranscodingProfile, ...]) -> HlsConfig:
    from framelog.processors.media.ffmpeg_commands import HLS_PLAYLIST_TYPES

    levels = []
    for q in r.items("quality_levels"):
        w, h = q.resolution("resolution")
        levels.append(QualityLevel(q.str("name"), w, h, q.bitrate("bitrate"), q.int("bandwidth", minimum=1)))
    levels.sort(key=lambda q: q.height, reverse=True)
    seg = r.int("segment_duration", minimum=1)
    playlist_type = r.str("playlist_type").upper()
    if playlist_type not in HLS_PLAYLIST_TYPES:
        raise ConfigError(r._key("playlist_type"), f"{r.raw('playlist_type')!r} is not supported "
                                                   f"(supported: {', '.join(sorted(HLS_PLAYLIST_TYPES))})")
    return HlsConfig(seg, playlist_type, r.bool("encryption"), r.str("key_uri_base"),
                     _ladder(profiles, levels), tuple(levels))


def _ladder(profiles: tuple[TranscodingProfile, ...], levels: list[QualityLevel]) -> tuple[QualityLevel, ...]:
    """The encoded ladder: one rung per transcoding profile, highest first.

    The profile gives the rung's resolution, bitrate and codec. The HLS level of
    the same name ("1080p_profile" <-> "1080p", case-insensitive) gives the
    rendition's name and its nominal BANDWIDTH for the player, scaled by the
    profile's bitrate over the level's (equal in the seed); a profile with no
    HLS level is streamed under its own name at its bitrate. An HLS level with
    no profile is not encoded.
    """
    by_name = {q.name.lower(): q for q in levels}
    ladder = []
    for p in profiles:
        level = by_name.get(p.rendition.lower())
        if level is None:
            ladder.append(QualityLevel(p.rendition, p.width, p.height, p.bitrate, p.bitrate, p.codec))
        else:
            bandwidth = max(1, round(level.bandwidth * p.bitrate / level.bitrate))
            ladder.append(QualityLevel(level.name, p.width, p.height, p.bitrate, bandwidth, p.codec))
    ladder.sort(key=lambda q: min(q.width, q.height), reverse=True)
    return tuple(ladder)


def _route(r: _Reader, providers: Mapping[str, CdnProvider], countries: tuple[str, ...]) -> RoutingRule:
    for key in ("primary", "fallback"):
        if r.str(key) not in providers:
            raise ConfigError(f"{r.path}.{key}", f"unknown CDN {r.str(key)!r}; known: {sorted(providers)}")
    return RoutingRule(countries, r.str("primary"), r.str("fallback"))


def _origin_shield(r: _Reader, caching: CachingStrategy) -> OriginShield:
    level = r.str("cache_level")
    found = [x for x in caching.levels if x.name == level]
    if not found:
        raise ConfigError(f"{r.path}.cache_level", f"no caching_strategy level named {level!r}; known: "
                                                   f"{[x.name for x in caching.levels]}")
    return OriginShield(r.int("shield_port", minimum=1), level, found[0].ttl)


def _edge_protection(r: _Reader) -> EdgeProtection:
    status = r.int("refused_status", minimum=400, maximum=599)
    return EdgeProtection(r.int("requests_per_second", minimum=1), r.int("burst", minimum=0),
                          r.int("connections_per_client", minimum=1), status, r.size("header_buffer"),
                          r.int("large_header_buffers", minimum=1), r.size("large_header_buffer_size"),
                          r.size("max_body"))


def _cdn(r: _Reader, caching_rules: _Reader, shield: OriginShield, protection: EdgeProtection) -> CdnConfig:
    providers = {}
    for key in ("primary_cdn", "secondary_cdn"):
        p = r.sub(key)
        providers[key] = CdnProvider(key, p.str("provider"), p.int("edge_port", minimum=1), p.str_list("regions"))
    rules = tuple(_route(x, providers, x.str_list("countries")) for x in r.items("routing_rules"))
    default = _route(r.sub("default_route"), providers, ())
    cache = {}
    for kind in caching_rules.data:
        c = caching_rules.sub(kind)
        cache[kind] = CacheRule(c.duration("cache_duration"), c.duration("browser_cache"), c.bool("edge_cache"))
    for required in ("video_files", "thumbnails", "hls_playlists", "hls_segments"):
        if required not in cache:
            raise ConfigError(f"caching_rules.{required}", "missing required key")
    return CdnConfig(providers, rules, default, cache, shield, protection)


def _caching(r: _Reader) -> CachingStrategy:
    levels = tuple(CacheLevel(x.str("name"), x.duration("ttl"), x.str_list("content_types")) for x in r.items("levels"))
    w = r.sub("cache_warming")
    t = w.sub("trending")
    trending = TrendingConfig(t.duration("window"), t.duration("step"), t.int("min_views", minimum=1),
                              t.duration("rewarm_after"))
    if trending.step <= 0 or trending.window < trending.step:
        raise ConfigError(f"{t.path}.window", "window must be at least one step, and step above 0")
    return CachingStrategy(levels, w.str_list("triggers"), w.int("popular_view_count", minimum=1),
                           w.int("warm_first_segments", minimum=0), trending)


def _metrics(r: _Reader) -> dict[str, MetricSpec]:
    out = {}
    for name in r.data:
        m = r.sub(name)
        kind = m.str("type")
        if kind not in ("gauge", "counter", "histogram"):
            raise ConfigError(f"{m.path}.type", f"expected gauge, counter or histogram, got {kind!r}")
        out[name] = MetricSpec(name, kind, m.str_list("labels"))
    return out


VISIBILITIES = ("public", "private", "share_link")


def _security(r: _Reader) -> SecurityConfig:
    visibility = r.str("default_visibility")
    if visibility not in VISIBILITIES:
        raise ConfigError(f"{r.path}.default_visibility", f"expected one of {list(VISIBILITIES)}, got {visibility!r}")
    return SecurityConfig(_env("FRAMELOG_TOKEN_SECRET", r.str("token_secret")), r.duration("stream_url_ttl"),
                          r.duration("share_token_ttl"), visibility)


def _auth(r: _Reader) -> AuthConfig:
    issuers = []
    for i, item in enumerate(r.raw("trusted_issuers", [])):
        t = _Reader(item, f"{r.path}.trusted_issuers[{i}]")
        issuers.append(TrustedIssuer(t.str("issuer"), Path(t.str("jwks_file")), t.str_list("scopes", []),
                                     t.str("subject_prefix", "")))
    return AuthConfig(
        r.str("issuer"), r.str("audience"), _env("FRAMELOG_KEYRING_FILE", r.str("keyring_file")),
        os.environ.get("FRAMELOG_KEYRING", ""), r.duration("token_ttl"), r.duration("max_token_lifetime"),
        r.int("max_token_bytes", minimum=256), r.duration("clock_leeway"), r.bool("anonymous_upload"),
        r.duration("anonymous_upload_ttl"), _env("FRAMELOG_OPS_HOST", r.str("ops_host")),
        r.int("ops_port_offset", minimum=1), tuple(issuers))


def _playback_trust(r: _Reader) -> PlaybackTrustConfig:
    import ipaddress

    proxies = r.str_list("trusted_proxies")
    for i, cidr in enumerate(proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"{r.path}.trusted_proxies[{i}]",
                              f"expected a CIDR like 10.0.0.0/8, got {cidr!r}") from None
    cfg = PlaybackTrustConfig(
        r.duration("session_ttl"), r.float("renew_at_fraction", minimum=0.1, maximum=0.9), proxies,
        r.float("session_rate", minimum=0.001), r.int("session_burst", minimum=1),
        r.float("client_rate", minimum=0.001), r.int("client_burst", minimum=1),
        r.int("rate_limit_entries", minimum=1), r.size("max_body_bytes"), r.size("max_decoded_bytes"),
        r.int("max_gzip_members", minimum=1), r.int("max_events", minimum=1))
    if cfg.session_ttl <= 0:
        raise ConfigError(f"{r.path}.session_ttl", f"must be > 0, got {cfg.session_ttl}")
    return cfg


def _known_tier(r: _Reader, key: str, tiers: Mapping[str, StorageTier]) -> str:
    name = r.str(key)
    if name not in tiers:
        raise ConfigError(key, f"unknown tier {name!r}; known: {sorted(tiers)}")
    return name


def _player(r: _Reader) -> PlayerConfig:
    cfg = PlayerConfig(r.duration("heartbeat_interval"), r.duration("event_flush_interval"),
                       r.int("event_batch_max", minimum=1))
    for key in ("heartbeat_interval", "event_flush_interval"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{r.path}.{key}", f"must be > 0, got {getattr(cfg, key)}")
    return cfg


def _webhooks(r: _Reader) -> WebhooksConfig:
    import ipaddress

    networks = r.str_list("allow_private_networks", [])
    for i, net in enumerate(networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"{r.path}.allow_private_networks[{i}]",
                              f"expected a CIDR network, got {net!r}") from None
    cfg = WebhooksConfig(
        retry_backoff_initial=r.duration("retry_backoff_initial"), retry_backoff_max=r.duration("retry_backoff_max"),
        retry_jitter=r.float("retry_jitter", minimum=0, maximum=1), max_attempts=r.int("max_attempts", minimum=1),
        request_timeout=r.duration("request_timeout"),
        max_in_flight_per_endpoint=r.int("max_in_flight_per_endpoint", minimum=1),
        delivery_threads=r.int("delivery_threads", minimum=1), max_payload_bytes=r.size("max_payload_bytes"),
        deliveries_retention=r.duration("deliveries_retention"),
        max_endpoints_per_owner=r.int("max_endpoints_per_owner", minimum=1), allow_private_networks=networks)
    for key in ("retry_backoff_initial", "retry_backoff_max", "request_timeout"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{r.path}.{key}", f"must be > 0, got {getattr(cfg, key)}")
    return cfg


def _live_progress(r: _Reader) -> LiveProgressConfig:
    cfg = LiveProgressConfig(r.duration("heartbeat_interval"), r.duration("max_stream_duration"))
    for key in ("heartbeat_interval", "max_stream_duration"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{r.path}.{key}", f"must be > 0, got {getattr(cfg, key)}")
    return cfg


def _api_protection(r: _Reader) -> ApiProtectionConfig:
    return ApiProtectionConfig(r.float("requests_per_second", minimum=0.1), r.int("burst", minimum=1),
                               r.int("max_concurrent_per_client", minimum=1),
                               r.int("max_concurrent_requests", minimum=1))


def build_config(data: Any, source: Path = Path("<memory>")) -> Config:
    """Validate a parsed YAML tree and build the typed Config."""
    root = _Reader(data, "")
    k = root.sub("kafka")
    s3 = root.sub("object_storage")
    ch = root.sub("clickhouse")
    tiers = _tiers(root.sub("storage_tiers"))
    default_tier = root.str("tiering_default_tier")
    if default_tier not in tiers:
        raise ConfigError("tiering_default_tier", f"unknown tier {default_tier!r}; known: {sorted(tiers)}")
    ul = root.sub("upload_limits")
    pipeline = _pipeline(root.sub("processing_pipeline"))
    abr = root.sub("abr")
    an = root.sub("analytics")
    sec = root.sub("security")
    caching = _caching(root.sub("caching_strategy"))
    return Config(
        source=source,
        stack=_stack(root.sub("stack")),
        kafka=KafkaConfig(_env("FRAMELOG_KAFKA_BOOTSTRAP", k.str("bootstrap_servers")),
                          _env("FRAMELOG_SCHEMA_REGISTRY_URL", k.str("schema_registry_url")),
                          k.int("default_partitions", minimum=1), k.str("client_id"),
                          *_kafka_security(k.sub("security"))),
        object_storage=ObjectStorageConfig(
            _env("FRAMELOG_S3_ENDPOINT", s3.str("endpoint_url")), _env("FRAMELOG_S3_BUCKET", s3.str("bucket")),
            s3.str("region"), _env("FRAMELOG_S3_ACCESS_KEY", ""), _env("FRAMELOG_S3_SECRET_KEY", ""),
            _env("FRAMELOG_S3_VAULT_BUCKET", s3.str("vault_bucket", "")), _s3_identity(s3)),
        clickhouse=ClickHouseConfig(_env("FRAMELOG_CLICKHOUSE_DSN", ch.str("dsn")), ch.str("database")),
        storage_tiers=tiers,
        tiering_rules=_tiering_rules(root.items("tiering_rules"), tiers),
        tiering_default_tier=default_tier,
        tiering_evaluation_interval=root.duration("tiering_evaluation_interval"),
        tiering_restore_tier=_known_tier(root, "tiering_restore_tier", tiers),
        tiering_restore_hold=root.duration("tiering_restore_hold"),
        pipeline=pipeline,
        priorities=_priorities(root.sub("processing_priorities")),
        upload_limits=UploadLimits(ul.size("max_size"), ul.duration("max_duration"), ul.bitrate("audio_bitrate")),
        media=_media(root.sub("media")),
        hls=_hls(root.sub("hls_config"), pipeline.transcoding_profiles),
        cdn=_cdn(root.sub("cdn_strategy"), root.sub("caching_rules"),
                 _origin_shield(root.sub("origin_shield"), caching), _edge_protection(root.sub("edge_protection"))),
        caching=caching,
        abr=AbrConfig(abr.duration("check_interval"), abr.int("bandwidth_history", minimum=1),
                      abr.float("low_buffer_seconds", minimum=0),
                      abr.float("switch_threshold", minimum=0.01, maximum=1)),
        player=_player(root.sub("player")),
        analytics=AnalyticsConfig(an.duration("raw_events_ttl"), an.duration("default_timeframe"),
                                  an.duration("max_timeframe"), an.float("completion_threshold", minimum=0, maximum=1),
                                  an.int("sink_batch_max_rows", minimum=1), an.duration("sink_batch_max_age"),
                                  an.int("sink_insert_threads", minimum=1, maximum=16)),
        metrics=_metrics(root.sub("monitoring_metrics")),
        security=_security(sec),
        analyst_sql=_analyst_sql(root.sub("analyst_sql")),
        auth=_auth(root.sub("auth")),
        webhooks=_webhooks(root.sub("webhooks")),
        live_progress=_live_progress(root.sub("live_progress")),
        playback_trust=_playback_trust(root.sub("playback_trust")),
        api_protection=_api_protection(root.sub("api_protection")),
        raw=data,
    )


def _analyst_sql(r: _Reader) -> AnalystSqlConfig:
    return AnalystSqlConfig(
        r.int("max_sql_chars", minimum=1), r.int("max_nesting", minimum=1, maximum=256),
        r.int("max_concurrent_queries", minimum=1, maximum=64), r.duration("retry_after"),
        r.duration("max_execution_time"), r.size("max_memory_usage"), r.int("max_result_rows", minimum=1),
        r.size("max_result_bytes"), r.int("max_rows_to_read", minimum=1), r.int("max_threads", minimum=1, maximum=64),
        r.int("os_thread_priority", minimum=0, maximum=19))


def _read_yaml(source: Path) -> Any:
    try:
        return yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise ConfigError("<file>", f"configuration file {source} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"{source} is not valid YAML: {exc}") from None


def merge_overlay(base: Any, overlay: Any) -> Any:
    """``overlay`` laid over ``base``: mappings merge key by key, anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(overlay, Mapping):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = merge_overlay(base.get(key), value) if key in base else value
        return merged
    return overlay


def load_config(path: str | os.PathLike[str] | None = None,
                overlay: str | os.PathLike[str] | None = None) -> Config:
    """Read the YAML file (FRAMELOG_CONFIG, else the packaged framelog.yaml).

    An overlay file (FRAMELOG_CONFIG_OVERLAY) changes only the keys it names,
    e.g. a second stack's ports, so the seed's numbers stay in one file.
    """
    source = Path(path or os.environ.get("FRAMELOG_CONFIG") or DEFAULT_CONFIG_PATH)
    data = _read_yaml(source)
    overlay = overlay or os.environ.get("FRAMELOG_CONFIG_OVERLAY")
    if overlay:
        data = merge_overlay(data, _read_yaml(Path(overlay)))
    return build_config(data, source)


@lru_cache(maxsize=1)
def get_config() -> Config:
    """The process-wide configuration, loaded once."""
    return load_config()
