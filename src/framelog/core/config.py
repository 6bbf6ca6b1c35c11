"""framelog.yaml, its overlay and the environment, validated into typed, frozen dataclasses.

The YAML file is the only place the seed's numbers live. Three sources, each
laid over the one before, key by key (a list is replaced whole):

1. the file: FRAMELOG_CONFIG, else the packaged framelog.yaml;
2. the overlay: FRAMELOG_CONFIG_OVERLAY, a file naming only the keys it changes
   (a second stack's ports, a test's short timeout);
3. the environment, by one rule for every key: ``FRAMELOG__<KEY>__<KEY>...``
   names the key's path in the file, case-insensitively, ``__`` between levels,
   a list item by its index or its ``name``; the value is read as YAML::

       FRAMELOG__PROCESSING_PIPELINE__STAGES__TRANSCODING__TIMEOUT=60s
       FRAMELOG__ANALYTICS__SINK_BATCH_MAX_ROWS=1000
       FRAMELOG__PLAYBACK_TRUST__TRUSTED_PROXIES='[10.0.0.0/8]'

   The older names (FRAMELOG_STATE_DIR, FRAMELOG_S3_ENDPOINT, ...) still work:
   core/config_env.py lists them (ENV_ALIASES) and details the rule.

Every mapping of the schema refuses keys it does not know, from any source:
``paralel_jobs: 8`` fails at start with ``ConfigError``
``processing_pipeline.stages[1].paralel_jobs: unknown key (did you mean
parallel_jobs?)``; a bad value names its dotted path the same way
(``processing_pipeline.stages[1].timeout: expected a duration ...``). The
schema is the dataclasses below: pydantic validates the merged tree against
their type hints (types, ranges, choices), then ``build_config`` checks what
ties one section to another (tier names, the ladder, routes) and assembles
``Config``, whose shape the code reads.
"""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config

from framelog.core.config_env import apply_env, env_settings, refuse_env_only
from framelog.core.config_errors import config_error, unknown_key
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


# ---------------------------------------------------------------- value types of the schema

def _parsed(parse: Any) -> BeforeValidator:
    """A ``parse_*`` function as a pydantic validator (pydantic adds the key's path)."""
    def validate(value: Any) -> Any:
        try:
            return parse(value, "")
        except ConfigError as exc:
            raise ValueError(exc.message) from None
    return BeforeValidator(validate)


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"expected a CIDR network like 10.0.0.0/8, got {value!r}") from None
    return value


Str = Annotated[str, Field(strict=True)]
Bool = Annotated[bool, Field(strict=True)]
Int = Annotated[int, Field(strict=True)]
Number = Annotated[float, Field(strict=True)]            # an int or a float, never a bool or a string
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
Duration = Annotated[float, _parsed(parse_duration)]     # seconds
PositiveDuration = Annotated[float, _parsed(parse_duration), Field(gt=0)]
Size = Annotated[int, _parsed(parse_size)]               # bytes
Bitrate = Annotated[int, _parsed(parse_bitrate)]         # bits per second
Resolution = Annotated[tuple[int, int], _parsed(parse_resolution)]
StrList = tuple[Str, ...]
Cidr = Annotated[str, Field(strict=True), AfterValidator(_cidr)]
NonEmpty = Field(min_length=1)


def _named(key_field: str) -> BeforeValidator:
    """A mapping of name -> section whose dataclass carries the name: the key fills ``key_field``."""
    def inject(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        for name, item in value.items():
            if isinstance(item, Mapping) and key_field in item:
                raise ValueError(f"{name}: '{key_field}' is the mapping's key; remove the '{key_field}:' line")
        return {name: {key_field: name, **item} if isinstance(item, Mapping) else item
                for name, item in value.items()}
    return BeforeValidator(inject)


_T = TypeVar("_T")


def section(cls: type[_T]) -> type[_T]:
    """A dataclass of the schema: its validation refuses keys it does not declare."""
    return with_config(ConfigDict(extra="forbid"))(cls)


# ---------------------------------------------------------------- sections

@section
@dataclass(frozen=True)
class StackConfig:
    state_dir: Path
    host: Str
    kafka_port: Port
    kafka_controller_port: Port
    seaweed_master_port: Port
    seaweed_volume_port: Port
    seaweed_filer_port: Port
    seaweed_s3_port: Port
    seaweed_admin_port: Port
    api_port: Port
    worker_metrics_port: Port
    startup_timeout: Duration
    metrics_host: Str = "127.0.0.1"    # where workers and the sink serve /metrics (0.0.0.0 in containers)
    kafka_node_port_step: Annotated[Int, Field(ge=2)] = 2   # broker i of N listens on kafka_port + step*(i-1)


KafkaProtocol = Literal["SASL_PLAINTEXT", "SASL_SSL"]        # only authenticated protocols ...
KafkaMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]   # ... only SCRAM (no plaintext passwords on the wire)
KAFKA_PROTOCOLS = get_args(KafkaProtocol)
KAFKA_MECHANISMS = get_args(KafkaMechanism)
S3Identity = Literal["pipeline", "media"]
S3_IDENTITIES = get_args(S3Identity)


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str
    schema_registry_url: str
    default_partitions: int
    client_id: str
    security_protocol: str = "SASL_PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    brokers: int = 1                  # KRaft nodes of the local stack (stack up --brokers N)
    replication_factor: int = 3       # replicas per topic, at most the cluster's brokers (streams/admin.py)
    min_insync_replicas: int = 2      # acks=all waits for these, at most replication_factor - 1
    stall_timeout: float = 120.0      # seconds a worker may own a partition with lag it does not advance,
                                      # beyond its group's longest record (streams/stall_watch.py)
    principal: str = "admin"     # not in the YAML: what the process is (streams/kafka_auth.as_principal)


@section
@dataclass(frozen=True)
class ObjectStorageConfig:
    endpoint_url: Str
    bucket: Str
    region: Str
    access_key: Str = ""         # env only; "": the identity's key pair from <state_dir>/credentials/s3.json
    secret_key: Str = ""
    vault_bucket: Str = ""         # Object Lock bucket for tiers with a retention_lock ("": none)
    identity: S3Identity = "pipeline"  # which generated identity the process uses (core/service_credentials.py)


@section
@dataclass(frozen=True)
class ClickHouseConfig:
    dsn: Str
    database: Str


RetentionLock = Literal["none", "governance", "compliance"]
RETENTION_LOCKS = get_args(RetentionLock)


@section
@dataclass(frozen=True)
class StorageTier:
    name: Str
    storage_class: Str
    retention_period: Duration    # seconds an object stays in the tier before any rule moves or deletes it
    price_per_gb_month: Annotated[Number, Field(ge=0)]
    description: Str = ""
    restore_delay: Duration = 0.0
    retention_lock: RetentionLock = "none"  # "governance" / "compliance": S3 Object Lock in the vault bucket; "none"


_Bound = Annotated[Number, Field(ge=0)]


@section
@dataclass(frozen=True)
class TieringRule:
    """One seed rule; bounds left as None do not constrain."""
    name: Str
    target_tier: Str
    min_age_days: _Bound | None = None
    max_age_days: _Bound | None = None
    max_access_count: Annotated[Int, Field(ge=0)] | None = None
    min_idle_days: _Bound | None = None   # popularity guard: not while watched within this many days


@section
@dataclass(frozen=True)
class ObjectTieringRules:
    """Rules for the objects of a video that are not HLS renditions (processors/tier_ledger.py object groups).

    Same shape and order semantics as ``tiering_rules``; access counts are the video's (any rendition).
    """
    source: tuple[TieringRule, ...] = ()       # the raw upload (uploads/<id>/original)
    mp4: tuple[TieringRule, ...] = ()          # the progressive MP4 (videos/yyyy/mm/<quality>/<id>.mp4)
    thumbnails: tuple[TieringRule, ...] = ()   # posters, thumbnails, storyboard, chapters (thumbnails/<id>/)


@section
@dataclass(frozen=True)
class StageConfig:
    name: Str
    timeout: Duration
    retry_attempts: Annotated[Int, Field(ge=0)]
    parallel_jobs: Annotated[Int, Field(ge=1)] = 1


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


@section
@dataclass(frozen=True)
class PriorityConfig:
    """processing_priorities: levels first to last, the default, per-workspace levels."""
    levels: StrList
    default: Str
    workspaces: dict[str, Str]

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


@section
@dataclass(frozen=True)
class UploadLimits:
    max_size: Size
    max_duration: Duration
    audio_bitrate: Bitrate
    part_size: Annotated[Size, Field(ge=5 * 2**20)]     # S3 multipart part the API cuts a PATCH body into
    checksum_body_max: Annotated[Size, Field(ge=1)]      # a PATCH with Upload-Checksum is spooled to disk, <= this
    page_status_poll: PositiveDuration                    # the upload page asks GET /videos/{id} this often


@section
@dataclass(frozen=True)
class CorsConfig:
    """Which browser origins may call the API (tus uploads from another site's page); none by default."""
    allowed_origins: StrList      # exact origins ("https://studio.example"); "*" allows any (no credentials)
    max_age: Duration             # how long a browser may cache a preflight answer


@section
@dataclass(frozen=True)
class CaptionsConfig:
    """Speech-to-text captions (pocketsphinx's bundled model; media.captions)."""
    enabled: Bool
    language: Str                # BCP 47 tag of the bundled model's language, e.g. "en-US"
    max_duration: Duration       # longer videos get no captions (CPU cost grows with the audio)
    max_recognition_time: Duration  # the recogniser is stopped after this long: no captions, the video goes on
    max_cue_duration: Duration
    max_cue_words: Annotated[Int, Field(ge=1)]


@section
@dataclass(frozen=True)
class ValidationSampling:
    """How validation decodes a sample of the upload (media.validation): start, end and ``samples`` between."""
    samples: Annotated[Int, Field(ge=0)]
    sample_duration: Duration


@section
@dataclass(frozen=True)
class TranscodingChunks:
    """media.transcoding: how the transcoding stage splits a video into chunk jobs (pipeline/agents/chunks.py)."""
    chunked: Bool                           # false: one single-pass job per video (the old stage)
    chunk_seconds: PositiveDuration         # a multiple of hls_config.segment_duration
    min_tail_segments: Annotated[Int, Field(ge=0)] = 1   # a shorter tail joins the chunk before it
    playable_while_processing: Bool = True  # publish every rung's leading chunks as growing EVENT playlists


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
    validation: ValidationSampling
    transcoding: TranscodingChunks


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


@section
@dataclass(frozen=True)
class CdnProvider:
    key: Str
    provider: Str
    edge_port: Port
    regions: StrList
    public_url: Str = ""         # how viewers reach this edge; "": http://<stack.host>:<edge_port>


@section
@dataclass(frozen=True)
class RoutingRule:
    countries: StrList
    primary: Str
    fallback: Str


@section
@dataclass(frozen=True)
class CacheRule:
    cache_duration: Duration
    browser_cache: Duration
    edge_cache: Bool


@dataclass(frozen=True)
class OriginShield:
    """The nginx tier between the edges and the bucket (seed: "Origin shield", the "Origin Cache" level)."""
    shield_port: int
    cache_level: str       # the caching_strategy level whose ttl bounds what the shield keeps
    ttl: float             # that level's ttl, seconds


@section
@dataclass(frozen=True)
class EdgeProtection:
    """Per-client limits and the request filter at the edges (seed: DDoS protection, WAF, bot management)."""
    requests_per_second: Annotated[Int, Field(ge=1)]
    burst: Annotated[Int, Field(ge=0)]
    connections_per_client: Annotated[Int, Field(ge=1)]
    refused_status: Annotated[Int, Field(ge=400, le=599)]
    header_buffer: Size
    large_header_buffers: Annotated[Int, Field(ge=1)]
    large_header_buffer_size: Size
    max_body: Size


@dataclass(frozen=True)
class CdnConfig:
    providers: dict[str, CdnProvider]
    routing_rules: tuple[RoutingRule, ...]
    default_route: RoutingRule
    caching_rules: dict[str, CacheRule]
    shield: OriginShield
    protection: EdgeProtection


@section
@dataclass(frozen=True)
class CacheLevel:
    name: Str
    ttl: Duration
    content_types: StrList


@section
@dataclass(frozen=True)
class TrendingConfig:
    """The seed's ``trending_content`` trigger and its "Geographic preloading" strategy."""
    window: Duration       # seconds of views counted (a hopping window ...)
    step: Duration         # ... advancing in steps of this many seconds
    min_views: Annotated[Int, Field(ge=1)]  # views in the window, from one country, that make a video trending there
    rewarm_after: Duration  # seconds before the same video is warmed again for the same country


@dataclass(frozen=True)
class CachingStrategy:
    levels: tuple[CacheLevel, ...]
    warming_triggers: tuple[str, ...]
    popular_view_count: int
    warm_first_segments: int
    trending: TrendingConfig


@section
@dataclass(frozen=True)
class AbrConfig:
    check_interval: Duration
    bandwidth_history: Annotated[Int, Field(ge=1)]
    low_buffer_seconds: Annotated[Number, Field(ge=0)]
    switch_threshold: Annotated[Number, Field(ge=0.01, le=1)]


@section
@dataclass(frozen=True)
class PlayerConfig:
    """The web player's reporting cadence (not in the seed; web/playback-events.js)."""
    heartbeat_interval: PositiveDuration    # a progress event this often while playing
    event_flush_interval: PositiveDuration  # queued events go to POST /v1/events at least this often
    event_batch_max: Annotated[Int, Field(ge=1)]  # ... or as soon as this many wait


@section
@dataclass(frozen=True)
class AnalyticsConfig:
    raw_events_ttl: Duration
    default_timeframe: Duration
    max_timeframe: Duration
    completion_threshold: Annotated[Number, Field(ge=0, le=1)]
    sink_batch_max_rows: Annotated[Int, Field(ge=1)]
    sink_batch_max_age: Duration
    max_series_points: Annotated[Int, Field(ge=1, le=100_000)]   # buckets one series answer may hold
    retention_points: Annotated[Int, Field(ge=2, le=1000)]        # the retention curve's steps over the duration
    sink_insert_threads: Annotated[Int, Field(ge=1, le=16)] = 1


@section
@dataclass(frozen=True)
class AnalystSqlConfig:
    """Guard bounds, engine limits and isolation of analysts' SQL (``analyst_sql:``)."""
    max_sql_chars: Annotated[Int, Field(ge=1)]
    max_nesting: Annotated[Int, Field(ge=1, le=256)]
    max_concurrent_queries: Annotated[Int, Field(ge=1, le=64)]
    retry_after: Duration
    max_execution_time: Duration
    max_memory_usage: Size
    max_result_rows: Annotated[Int, Field(ge=1)]
    max_result_bytes: Size
    max_rows_to_read: Annotated[Int, Field(ge=1)]
    max_threads: Annotated[Int, Field(ge=1, le=64)]
    os_thread_priority: Annotated[Int, Field(ge=0, le=19)]


@section
@dataclass(frozen=True)
class MetricSpec:
    name: Str
    type: Literal["gauge", "counter", "histogram"]
    labels: StrList


Visibility = Literal["public", "private", "share_link"]
VISIBILITIES = get_args(Visibility)


@section
@dataclass(frozen=True)
class SecurityConfig:
    token_secret: Str
    stream_url_ttl: Duration
    share_token_ttl: Duration
    default_visibility: Visibility   # of a video whose upload named none (public / private / share_link)


@section
@dataclass(frozen=True)
class TrustedIssuer:
    """A customer's back end allowed to mint user tokens: its issuer, public keys and grantable scopes."""
    issuer: Str
    jwks_file: Path
    scopes: StrList = ()
    subject_prefix: Str = ""         # its sub and ws must start with this: one tenant cannot name another's users


@section
@dataclass(frozen=True)
class AuthConfig:
    """API tokens (JWTs, see processors/identity.py) and the operator listener."""
    issuer: Str
    audience: Str
    keyring_file: Str                # "" = <state_dir>/keyring.json
    token_ttl: Duration
    max_token_lifetime: Duration
    max_token_bytes: Annotated[Int, Field(ge=256)]
    clock_leeway: Duration
    anonymous_upload: Bool
    anonymous_upload_ttl: Duration
    ops_host: Str
    ops_port_offset: Annotated[Int, Field(ge=1)]
    trusted_issuers: tuple[TrustedIssuer, ...] = ()
    keyring_json: Str = ""           # env only (FRAMELOG_KEYRING): the keyring itself (read-only), for deployments


@section
@dataclass(frozen=True)
class WebhooksConfig:
    """Webhook delivery (pipeline/webhooks.py): retries, limits and which private networks may be targets."""
    retry_backoff_initial: PositiveDuration
    retry_backoff_max: PositiveDuration
    retry_jitter: Annotated[Number, Field(ge=0, le=1)]
    max_attempts: Annotated[Int, Field(ge=1)]
    request_timeout: PositiveDuration
    max_in_flight_per_endpoint: Annotated[Int, Field(ge=1)]
    delivery_threads: Annotated[Int, Field(ge=1)]
    max_payload_bytes: Size
    deliveries_retention: Duration
    max_endpoints_per_owner: Annotated[Int, Field(ge=1)]
    allow_private_networks: tuple[Cidr, ...] = ()


@section
@dataclass(frozen=True)
class DeliveryConfig:
    """The public addresses viewers use (processors/public_urls.py); "" derives them from the local ports."""
    public_api_url: Str = ""     # "": http://<stack.host>:<stack.api_port>
    key_url_base: Str = ""       # "": <public api url>/v1/keys


@section
@dataclass(frozen=True)
class LiveProgressConfig:
    """GET /videos/{id}/events (api/live.py)."""
    heartbeat_interval: PositiveDuration
    max_stream_duration: PositiveDuration


@section
@dataclass(frozen=True)
class ApiProtectionConfig:
    """Per-client limits for every API route (api/protection.py) and the process's connection ceiling."""
    requests_per_second: Annotated[Number, Field(ge=0.1)]
    burst: Annotated[Int, Field(ge=1)]
    max_concurrent_per_client: Annotated[Int, Field(ge=1)]
    max_concurrent_requests: Annotated[Int, Field(ge=1)]
    max_json_body: Annotated[Int, Field(ge=1024)]


@section
@dataclass(frozen=True)
class PlaybackTrustConfig:
    """How far playback events are believed (api/event_trust.py): sessions, rate limits, proxies, body limits."""
    session_ttl: PositiveDuration
    renew_at_fraction: Annotated[Number, Field(ge=0.1, le=0.9)]
    trusted_proxies: tuple[Cidr, ...]
    session_rate: Annotated[Number, Field(ge=0.001)]
    session_burst: Annotated[Int, Field(ge=1)]
    client_rate: Annotated[Number, Field(ge=0.001)]
    client_burst: Annotated[Int, Field(ge=1)]
    rate_limit_entries: Annotated[Int, Field(ge=1)]
    max_body_bytes: Size
    max_decoded_bytes: Size
    max_gzip_members: Annotated[Int, Field(ge=1)]
    max_events: Annotated[Int, Field(ge=1)]


@dataclass(frozen=True)
class TieringConfig:
    """What the tier policy reads (framelog.yaml's storage_tiers, tiering_rules, tiering_object_rules and
    tiering), so the processors that decide tiers take this, not the whole ``Config`` (``config.tiering``)."""
    tiers: Mapping[str, StorageTier]
    rules: tuple[TieringRule, ...]
    object_rules: ObjectTieringRules
    default_tier: str
    evaluation_interval: float
    restore_tier: str
    restore_hold: float


@dataclass(frozen=True)
class TopicsConfig:
    """What the topic registry reads (streams/topics.py): the stages and priority levels that name the
    request topics, and the webhook deliveries' retention, so the registry and the codec that checks
    records against it take this, not the whole ``Config`` (``config.topics``)."""
    pipeline: PipelineConfig
    priorities: PriorityConfig
    webhooks: WebhooksConfig


@dataclass(frozen=True)
class StreamsConfig:
    """What a Kafka client of framelog reads (streams/): the brokers and its identity (kafka; the stack's
    nodes and the state dir's credentials) and the topic registry its codec checks records against, so
    producers, consumers, replayed tables and the topic tools take this, not the whole ``Config``
    (``config.streams``)."""
    kafka: KafkaConfig
    stack: StackConfig
    topics: TopicsConfig


@dataclass(frozen=True)
class Config:
    source: Path
    stack: StackConfig
    kafka: KafkaConfig
    object_storage: ObjectStorageConfig
    clickhouse: ClickHouseConfig
    storage_tiers: dict[str, StorageTier]
    tiering_rules: tuple[TieringRule, ...]
    tiering_object_rules: ObjectTieringRules
    tiering_default_tier: str
    tiering_evaluation_interval: float
    tiering_restore_tier: str
    tiering_restore_hold: float
    pipeline: PipelineConfig
    priorities: PriorityConfig
    upload_limits: UploadLimits
    cors: CorsConfig
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
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @cached_property
    def tiering(self) -> TieringConfig:
        return TieringConfig(self.storage_tiers, self.tiering_rules, self.tiering_object_rules,
                             self.tiering_default_tier, self.tiering_evaluation_interval, self.tiering_restore_tier,
                             self.tiering_restore_hold)

    @cached_property
    def topics(self) -> TopicsConfig:
        return TopicsConfig(self.pipeline, self.priorities, self.webhooks)

    @cached_property
    def streams(self) -> StreamsConfig:
        return StreamsConfig(self.kafka, self.stack, self.topics)

    @property
    def ops_port(self) -> int:
        """The operator listener's port (/metrics, /docs): next to the API's, so every stack moves both."""
        return self.stack.api_port + self.auth.ops_port_offset

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse.dsn or f"chdb://{(self.stack.state_dir / 'clickhouse').resolve()}"


# ---------------------------------------------------------------- the file's shape where Config's differs

@section
@dataclass(frozen=True)
class _KafkaSecurity:
    protocol: KafkaProtocol      # SASL_SSL where the broker terminates TLS
    mechanism: KafkaMechanism


@section
@dataclass(frozen=True)
class _KafkaFile:
    bootstrap_servers: Str
    schema_registry_url: Str
    default_partitions: Annotated[Int, Field(ge=1)]
    client_id: Str
    security: _KafkaSecurity
    brokers: Annotated[Int, Field(ge=1, le=9)] = 1
    replication_factor: Annotated[Int, Field(ge=1)] = 3
    min_insync_replicas: Annotated[Int, Field(ge=1)] = 2
    stall_timeout: PositiveDuration = 120.0


@section
@dataclass(frozen=True)
class _ProfileFile:
    name: Str
    resolution: Resolution
    bitrate: Bitrate
    codec: Str


@section
@dataclass(frozen=True)
class _PipelineFile:
    stages: Annotated[tuple[StageConfig, ...], NonEmpty]
    transcoding_profiles: Annotated[tuple[_ProfileFile, ...], NonEmpty]
    retry_backoff_initial: Duration
    retry_backoff_max: Duration
    kill_grace: Duration


@section
@dataclass(frozen=True)
class _Thumbnails:
    interval: Duration
    tile_width: Annotated[Int, Field(ge=16)]
    columns: Annotated[Int, Field(ge=1)]


@section
@dataclass(frozen=True)
class _Analysis:
    scene_threshold: Annotated[Number, Field(ge=0, le=1)]
    min_chapter: Duration
    black_min_duration: Duration
    silence_noise_db: Number
    silence_min_duration: Duration


@section
@dataclass(frozen=True)
class _Optimization:
    quality_sample: Duration
    min_ssim_gain_db: Annotated[Number, Field(ge=0)]
    min_psnr_gain_db: Annotated[Number, Field(ge=0)]


@section
@dataclass(frozen=True)
class _MediaFile:
    x264_preset: Str
    allow_4k_label: Bool
    thumbnails: _Thumbnails
    analysis: _Analysis
    optimization: _Optimization
    captions: CaptionsConfig
    validation: ValidationSampling
    transcoding: TranscodingChunks


@section
@dataclass(frozen=True)
class _QualityLevelFile:
    name: Str
    resolution: Resolution
    bitrate: Bitrate
    bandwidth: Annotated[Int, Field(ge=1)]


@section
@dataclass(frozen=True)
class _HlsFile:
    segment_duration: Annotated[Int, Field(ge=1)]
    playlist_type: Str
    encryption: Bool
    key_uri_base: Str
    quality_levels: Annotated[tuple[_QualityLevelFile, ...], NonEmpty]


@section
@dataclass(frozen=True)
class _ProviderFile:
    provider: Str
    edge_port: Port
    regions: StrList
    public_url: Str = ""


@section
@dataclass(frozen=True)
class _DefaultRoute:
    primary: Str
    fallback: Str


@section
@dataclass(frozen=True)
class _CdnStrategyFile:
    primary_cdn: _ProviderFile
    secondary_cdn: _ProviderFile
    routing_rules: Annotated[tuple[RoutingRule, ...], NonEmpty]
    default_route: _DefaultRoute


@section
@dataclass(frozen=True)
class _OriginShieldFile:
    shield_port: Port
    cache_level: Str


@section
@dataclass(frozen=True)
class _CacheWarming:
    triggers: StrList
    popular_view_count: Annotated[Int, Field(ge=1)]
    warm_first_segments: Annotated[Int, Field(ge=0)]
    trending: TrendingConfig


@section
@dataclass(frozen=True)
class _CachingFile:
    levels: Annotated[tuple[CacheLevel, ...], NonEmpty]
    cache_warming: _CacheWarming


def _metrics_host_defaults_to_host(value: Any) -> Any:
    if isinstance(value, Mapping) and "metrics_host" not in value and "host" in value:
        return {**value, "metrics_host": value["host"]}
    return value


@section
@dataclass(frozen=True)
class ConfigFile:
    """framelog.yaml's top level: every key a file, an overlay or the environment may set."""
    stack: Annotated[StackConfig, BeforeValidator(_metrics_host_defaults_to_host)]
    kafka: _KafkaFile
    object_storage: ObjectStorageConfig
    clickhouse: ClickHouseConfig
    storage_tiers: Annotated[dict[str, StorageTier], _named("name"), NonEmpty]
    tiering_rules: Annotated[tuple[TieringRule, ...], NonEmpty]
    tiering_object_rules: ObjectTieringRules
    tiering_default_tier: Str
    tiering_evaluation_interval: Duration
    tiering_restore_tier: Str
    tiering_restore_hold: Duration
    processing_pipeline: _PipelineFile
    processing_priorities: PriorityConfig
    upload_limits: UploadLimits
    cors: CorsConfig
    media: _MediaFile
    hls_config: _HlsFile
    cdn_strategy: _CdnStrategyFile
    origin_shield: _OriginShieldFile
    edge_protection: EdgeProtection
    caching_rules: dict[str, CacheRule]
    caching_strategy: _CachingFile
    abr: AbrConfig
    player: PlayerConfig
    analytics: AnalyticsConfig
    analyst_sql: AnalystSqlConfig
    monitoring_metrics: Annotated[dict[str, MetricSpec], _named("name")]
    security: SecurityConfig
    auth: AuthConfig
    webhooks: WebhooksConfig
    live_progress: LiveProgressConfig
    playback_trust: PlaybackTrustConfig
    api_protection: ApiProtectionConfig
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)


_SCHEMA = TypeAdapter(ConfigFile)


# ---------------------------------------------------------------- what ties one section to another

CACHE_KINDS = ("video_files", "thumbnails", "hls_playlists", "hls_segments")   # caching_rules, one per file type
_PRIORITY = re.compile(r"^[a-z][a-z0-9_]{0,15}$")


def _known(value: str, known: Mapping[str, Any] | tuple[str, ...], key: str, what: str) -> str:
    if value not in known:
        raise ConfigError(key, f"unknown {what} {value!r}; known: {sorted(known)}")
    return value


def _pipeline(f: _PipelineFile) -> PipelineConfig:
    names = [s.name for s in f.stages]
    if len(set(names)) != len(names):
        raise ConfigError("processing_pipeline.stages", f"stage names must be unique, got {names}")
    from framelog.processors.media.ffmpeg_commands import VIDEO_ENCODERS  # the codecs framelog can encode

    profiles = []
    for i, p in enumerate(f.transcoding_profiles):
        codec = p.codec.lower()
        if codec not in VIDEO_ENCODERS:
            raise ConfigError(f"processing_pipeline.transcoding_profiles[{i}].codec",
                              f"{p.codec!r} is not supported for profile {p.name!r} "
                              f"(supported: {', '.join(sorted(VIDEO_ENCODERS))})")
        profiles.append(TranscodingProfile(p.name, *p.resolution, p.bitrate, codec))
    renditions = [p.rendition.lower() for p in profiles]
    for i, rendition in enumerate(renditions):
        if rendition in renditions[:i]:
            raise ConfigError(f"processing_pipeline.transcoding_profiles[{i}].name",
                              f"{profiles[i].name!r} names the rung {profiles[i].rendition!r} twice")
    return PipelineConfig(f.stages, tuple(profiles), f.retry_backoff_initial, f.retry_backoff_max, f.kill_grace)


def _priorities(p: PriorityConfig) -> PriorityConfig:
    for i, level in enumerate(p.levels):
        if not _PRIORITY.match(level) or level == "dlq":
            raise ConfigError(f"processing_priorities.levels[{i}]",
                              f"{level!r} must be a short lower-case name (not 'dlq')")
    if not p.levels or len(set(p.levels)) != len(p.levels):
        raise ConfigError("processing_priorities.levels", f"expected distinct levels, got {list(p.levels)}")
    _known(p.default, p.levels, "processing_priorities.default", "level")
    for name, level in p.workspaces.items():
        _known(level, p.levels, f"processing_priorities.workspaces.{name}", "level")
    return p


def _media(m: _MediaFile, segment_seconds: int) -> MediaConfig:
    from framelog.processors.media.chunking import check_chunk_seconds

    t, a, o = m.thumbnails, m.analysis, m.optimization
    try:
        check_chunk_seconds(m.transcoding.chunk_seconds, segment_seconds)
    except ValueError as exc:
        raise ConfigError("media.transcoding.chunk_seconds", str(exc)) from None
    return MediaConfig(
        x264_preset=m.x264_preset, allow_4k_label=m.allow_4k_label, thumbnail_interval=t.interval,
        thumbnail_tile_width=t.tile_width, thumbnail_columns=t.columns, scene_threshold=a.scene_threshold,
        min_chapter=a.min_chapter, black_min_duration=a.black_min_duration, silence_noise_db=a.silence_noise_db,
        silence_min_duration=a.silence_min_duration, quality_sample=o.quality_sample,
        min_ssim_gain_db=o.min_ssim_gain_db, min_psnr_gain_db=o.min_psnr_gain_db, captions=m.captions,
        validation=m.validation, transcoding=m.transcoding)


def _hls(h: _HlsFile, profiles: tuple[TranscodingProfile, ...]) -> HlsConfig:
    from framelog.processors.media.ffmpeg_commands import HLS_PLAYLIST_TYPES

    levels = sorted((QualityLevel(q.name, *q.resolution, q.bitrate, q.bandwidth) for q in h.quality_levels),
                    key=lambda q: q.height, reverse=True)
    playlist_type = h.playlist_type.upper()
    if playlist_type not in HLS_PLAYLIST_TYPES:
        raise ConfigError("hls_config.playlist_type", f"{h.playlist_type!r} is not supported "
                                                      f"(supported: {', '.join(sorted(HLS_PLAYLIST_TYPES))})")
    return HlsConfig(h.segment_duration, playlist_type, h.encryption, h.key_uri_base,
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


def _route(primary: str, fallback: str, countries: tuple[str, ...], providers: Mapping[str, CdnProvider],
           key: str) -> RoutingRule:
    _known(primary, providers, f"{key}.primary", "CDN")
    _known(fallback, providers, f"{key}.fallback", "CDN")
    return RoutingRule(countries, primary, fallback)


def _cdn(f: ConfigFile, caching: CachingStrategy) -> CdnConfig:
    s = f.cdn_strategy
    providers = {key: CdnProvider(key, p.provider, p.edge_port, p.regions, p.public_url)
                 for key, p in (("primary_cdn", s.primary_cdn), ("secondary_cdn", s.secondary_cdn))}
    rules = tuple(_route(r.primary, r.fallback, r.countries, providers, f"cdn_strategy.routing_rules[{i}]")
                  for i, r in enumerate(s.routing_rules))
    default = _route(s.default_route.primary, s.default_route.fallback, (), providers, "cdn_strategy.default_route")
    for kind in f.caching_rules:
        if kind not in CACHE_KINDS:
            raise ConfigError(f"caching_rules.{kind}", unknown_key(kind, list(CACHE_KINDS)))
    for kind in CACHE_KINDS:
        if kind not in f.caching_rules:
            raise ConfigError(f"caching_rules.{kind}", "missing required key")
    level = f.origin_shield.cache_level
    found = [x for x in caching.levels if x.name == level]
    if not found:
        raise ConfigError("origin_shield.cache_level", f"no caching_strategy level named {level!r}; known: "
                                                       f"{[x.name for x in caching.levels]}")
    shield = OriginShield(f.origin_shield.shield_port, level, found[0].ttl)
    return CdnConfig(providers, rules, default, dict(f.caching_rules), shield, f.edge_protection)


def _caching(c: _CachingFile) -> CachingStrategy:
    w = c.cache_warming
    if w.trending.step <= 0 or w.trending.window < w.trending.step:
        raise ConfigError("caching_strategy.cache_warming.trending.window",
                          "window must be at least one step, and step above 0")
    return CachingStrategy(c.levels, w.triggers, w.popular_view_count, w.warm_first_segments, w.trending)


def _validate(data: Any, origins: Mapping[tuple[Any, ...], str]) -> ConfigFile:
    try:
        return _SCHEMA.validate_python(data)
    except ValidationError as exc:
        raise config_error(exc, ConfigFile, origins) from None


def build_config(data: Any, source: Path = Path("<memory>"), environ: Mapping[str, str] | None = None,
                 origins: Mapping[tuple[Any, ...], str] | None = None) -> Config:
    """Validate a parsed YAML tree, with the environment laid over it, and build the typed Config.

    ``origins`` says which source set which key (an overlay): errors name it.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("<root>", f"expected a mapping, got {type(data).__name__}")
    refuse_env_only(data)
    tree, from_env = apply_env(data, env_settings(os.environ if environ is None else environ))
    f = _validate(tree, {**(origins or {}), **from_env})
    tiers = f.storage_tiers
    for i, rule in enumerate(f.tiering_rules):
        _known(rule.target_tier, tiers, f"tiering_rules[{i}].target_tier", "tier")
    for group in ("source", "mp4", "thumbnails"):
        for i, rule in enumerate(getattr(f.tiering_object_rules, group)):
            _known(rule.target_tier, tiers, f"tiering_object_rules.{group}[{i}].target_tier", "tier")
    pipeline = _pipeline(f.processing_pipeline)
    caching = _caching(f.caching_strategy)
    k = f.kafka
    return Config(
        source=source,
        stack=replace(f.stack, state_dir=f.stack.state_dir.absolute()),
        kafka=KafkaConfig(k.bootstrap_servers, k.schema_registry_url, k.default_partitions, k.client_id,
                          k.security.protocol, k.security.mechanism, k.brokers, k.replication_factor,
                          k.min_insync_replicas, k.stall_timeout),
        object_storage=f.object_storage,
        clickhouse=f.clickhouse,
        storage_tiers=tiers,
        tiering_rules=f.tiering_rules,
        tiering_object_rules=f.tiering_object_rules,
        tiering_default_tier=_known(f.tiering_default_tier, tiers, "tiering_default_tier", "tier"),
        tiering_evaluation_interval=f.tiering_evaluation_interval,
        tiering_restore_tier=_known(f.tiering_restore_tier, tiers, "tiering_restore_tier", "tier"),
        tiering_restore_hold=f.tiering_restore_hold,
        pipeline=pipeline,
        priorities=_priorities(f.processing_priorities),
        upload_limits=f.upload_limits,
        cors=f.cors,
        media=_media(f.media, f.hls_config.segment_duration),
        hls=_hls(f.hls_config, pipeline.transcoding_profiles),
        cdn=_cdn(f, caching),
        caching=caching,
        abr=f.abr,
        player=f.player,
        analytics=f.analytics,
        metrics=f.monitoring_metrics,
        security=f.security,
        analyst_sql=f.analyst_sql,
        auth=f.auth,
        webhooks=f.webhooks,
        live_progress=f.live_progress,
        playback_trust=f.playback_trust,
        api_protection=f.api_protection,
        delivery=f.delivery,
        raw=data,
    )


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
    """Read the YAML file (FRAMELOG_CONFIG, else the packaged framelog.yaml), its overlay and the environment.

    An overlay file (FRAMELOG_CONFIG_OVERLAY) changes only the keys it names,
    e.g. a second stack's ports, so the seed's numbers stay in one file. A
    mistake in it is reported with the overlay's name.
    """
    source = Path(path or os.environ.get("FRAMELOG_CONFIG") or DEFAULT_CONFIG_PATH)
    data = _read_yaml(source)
    origins: dict[tuple[Any, ...], str] = {}
    overlay = overlay or os.environ.get("FRAMELOG_CONFIG_OVERLAY")
    if overlay:
        extra = _read_yaml(Path(overlay)) or {}
        refuse_env_only(extra, f"in the overlay {overlay}")
        data = merge_overlay(data, extra)
        origins = {path: f"the overlay {overlay}" for path in _leaf_paths(extra)}
    return build_config(data, source, origins=origins)


def _leaf_paths(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths an overlay sets: mappings are walked, anything else (a list too) is one setting."""
    if not isinstance(tree, Mapping) or not tree:
        return [prefix] if prefix else []
    return [p for key, value in tree.items() for p in _leaf_paths(value, (*prefix, key))]


@lru_cache(maxsize=1)
def get_config() -> Config:
    """The process-wide configuration, loaded once."""
    return load_config()
