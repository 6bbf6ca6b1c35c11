"""What each Kafka principal may touch, and applying it to the broker (idempotently).

The broker runs StandardAuthorizer with ``allow.everyone.if.no.acl.found=false``: a principal
may do only what a grant below allows (super users: admin, the broker, the controller).
Grants follow the code: the topics each process consumes (READ, on its own consumer
groups) and produces (WRITE), the ``.dlq`` twin of every topic it consumes (its
dead-lettering), and for a Faust app every topic of its application id (``framelog-<group>-``,
its table changelogs, created by the app itself).

``apply_acls`` is run by ``framelog topics create`` / ``framelog init`` / ``framelog acls apply``
and by ``stack up``; it creates the missing bindings and deletes framelog's own principals'
bindings that the registry no longer lists, so a run after a code change converges.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from framelog.core.config import PipelineConfig, PriorityConfig, StreamsConfig
from framelog.streams import topics as t
from framelog.streams.kafka_auth import API, SINK, principals, worker_principal

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")   # both written: kafka.security.mechanism may change
SCRAM_ITERATIONS = 8192
READ, WRITE, DESCRIBE, ALL = "READ", "WRITE", "DESCRIBE", "ALL"
TOPIC, GROUP = "TOPIC", "GROUP"
LITERAL, PREFIXED = "LITERAL", "PREFIXED"


@dataclass(frozen=True, order=True)
class Grant:
    """ALLOW ``operation`` on ``resource`` ``name`` (matched ``pattern``) to ``User:principal`` from any host."""

    principal: str
    resource: str
    name: str
    operation: str
    pattern: str = LITERAL


def _topics(principal: str, reads: Iterable[str], writes: Iterable[str]) -> list[Grant]:
    reads = list(reads)
    grants = [Grant(principal, TOPIC, name, READ) for name in reads]
    grants += [Grant(principal, TOPIC, name, WRITE) for name in
               sorted(set(writes) | {t.dead_letter_topic(name) for name in reads})]
    return grants


def _faust_app(principal: str, group: str) -> list[Grant]:
    """A worker group's consumer group and every topic under its application id (table changelogs)."""
    app_id = f"framelog-{group}"
    return [Grant(principal, GROUP, app_id, READ),
            Grant(principal, TOPIC, f"{app_id}-", ALL, PREFIXED)]


def registry(pipeline: PipelineConfig, priorities: PriorityConfig) -> list[Grant]:
    """Every grant of every framelog principal (the stages and their request topics:
    ``config.pipeline, config.priorities``)."""
    from framelog.pipeline.worker import CDN, CHUNKS, INTAKE, POPULARITY, STITCH, TIERING, WEBHOOKS

    stages = pipeline.stage_names

    def requests(stage: str) -> list[str]:      # a stage's request topics, one per priority level
        return [topic for _, topic in t.stage_topics(priorities, stage)]

    grants: list[Grant] = []
    # The HTTP API: uploads, deletions, access policies and share links, playback events, restore
    # requests, cache purges; it replays the catalog, status and tier views under its own
    # per-process groups, and reads the stages' committed offsets for its queue-size gauge.
    # Webhooks: it registers endpoints, lists their delivery steps and replays messages.
    grants += _topics(API, reads=(t.ACCESS, t.UPLOADS, t.ASSETS, t.STAGE_TRANSITIONS, t.TIER_TRANSITIONS,
                                  t.WEBHOOK_ENDPOINTS, t.WEBHOOK_DELIVERIES),
                      writes=(t.UPLOADS, t.ACCESS, t.CDN_COMMANDS, t.PLAYBACK_EVENTS, t.QUALITY_SWITCHES,
                              t.TIER_TRANSITIONS, t.WEBHOOK_ENDPOINTS, t.WEBHOOK_DELIVERIES,
                              t.dead_letter_topic(t.PLAYBACK_EVENTS), t.dead_letter_topic(t.QUALITY_SWITCHES)))
    grants += [Grant(API, GROUP, prefix, READ, PREFIXED)
               for prefix in ("framelog-catalog-", "framelog-status-", "framelog-tier-view-",
                              "framelog-webhook-endpoints-", "framelog-webhook-deliveries-", "framelog-webhook-steps-")]
    grants += [Grant(API, GROUP, f"framelog-{s}", DESCRIBE) for s in stages]
    grants += [Grant(API, TOPIC, topic, DESCRIBE) for s in stages for topic in requests(s)]
    # The analytics sink: playback events and quality switches into ClickHouse.
    from framelog.sinks.clickhouse.runner import GROUP_ID, SOURCE_TOPICS
    grants += _topics(SINK, reads=SOURCE_TOPICS, writes=())
    grants += [Grant(SINK, GROUP, GROUP_ID, READ, PREFIXED)]     # `framelog sink analytics --group <GROUP_ID>-...`
    # The worker groups (pipeline/worker.py, pipeline/agents/).
    intake = worker_principal(INTAKE)
    grants += _topics(intake, reads=(t.UPLOADS,), writes=(t.STAGE_TRANSITIONS, *requests(stages[0])))
    grants += _faust_app(intake, INTAKE)
    for i, stage in enumerate(stages):
        p = worker_principal(stage)
        writes = [t.STAGE_TRANSITIONS, *requests(stage)]                          # its own: retries
        if stage == "transcoding":                 # chunked: the fan-out of the chunk jobs, placed by the
            writes += [t.CHUNK_REQUESTS, t.CHUNK_TRANSITIONS]       # chunk workers' load (their group's lag)
            grants += [Grant(p, GROUP, f"framelog-{CHUNKS}", DESCRIBE)]
        if i + 1 < len(stages):
            writes += requests(stages[i + 1])
        else:                              # the last stage publishes the assets and warms the edges
            writes += [t.ASSETS, t.CDN_COMMANDS]
        grants += _topics(p, reads=requests(stage), writes=writes)
        grants += _faust_app(p, stage)
    # Chunked transcoding (pipeline/agents/chunks.py): the chunk workers and the stitch, which ends the
    # transcoding stage (the next stage's request) and re-requests failed chunks.
    grants += _topics(worker_principal(CHUNKS), reads=(t.CHUNK_REQUESTS,), writes=(t.CHUNK_TRANSITIONS,))
    grants += _faust_app(worker_principal(CHUNKS), CHUNKS)
    after = stages[stages.index("transcoding") + 1:stages.index("transcoding") + 2] if "transcoding" in stages else ()
    grants += _topics(worker_principal(STITCH), reads=(t.CHUNK_TRANSITIONS,),
                      writes=(t.CHUNK_TRANSITIONS, t.CHUNK_REQUESTS, t.STAGE_TRANSITIONS, t.CDN_COMMANDS,
                              *(topic for s in after for topic in requests(s))))
    grants += [Grant(worker_principal(STITCH), GROUP, f"framelog-{CHUNKS}", DESCRIBE)]    # a retry's placement
    grants += _faust_app(worker_principal(STITCH), STITCH)
    grants += _topics(worker_principal(CDN), reads=(t.CDN_COMMANDS,), writes=())
    grants += _faust_app(worker_principal(CDN), CDN)
    grants += _topics(worker_principal(POPULARITY), reads=(t.PLAYBACK_EVENTS,), writes=(t.CDN_COMMANDS,))
    grants += _faust_app(worker_principal(POPULARITY), POPULARITY)
    grants += _topics(worker_principal(TIERING), reads=(t.ASSETS, t.PLAYBACK_EVENTS, t.TIER_TRANSITIONS),
                      writes=(t.TIER_TRANSITIONS,))
    grants += _faust_app(worker_principal(TIERING), TIERING)
    # The webhooks worker (pipeline/webhooks.py, a plain consumer): video events in, delivery steps out;
    # it replays the endpoint registry, the video catalog and the pending deliveries.
    hooks = worker_principal(WEBHOOKS)
    from framelog.pipeline.webhooks import GROUP_ID as WEBHOOKS_GROUP
    from framelog.pipeline.webhooks import SOURCE_TOPICS as WEBHOOK_SOURCES
    grants += _topics(hooks, reads=(*WEBHOOK_SOURCES, t.ACCESS, t.WEBHOOK_ENDPOINTS, t.WEBHOOK_DELIVERIES),
                      writes=(t.WEBHOOK_DELIVERIES,))
    grants += [Grant(hooks, GROUP, WEBHOOKS_GROUP, READ)]
    grants += [Grant(hooks, GROUP, prefix, READ, PREFIXED)
               for prefix in ("framelog-catalog-", "framelog-webhook-endpoints-", "framelog-webhook-deliveries-")]
    return sorted(set(grants))


# ---------------------------------------------------------------- applying

def _binding(grant: Grant):
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return AclBinding(ResourceType[grant.resource], grant.name, ResourcePatternType[grant.pattern],
                      f"User:{grant.principal}", "*", AclOperation[grant.operation], AclPermissionType.ALLOW)


def _as_grant(binding) -> Grant | None:
    if not binding.principal.startswith("User:") or binding.host != "*" or binding.permission_type.name != "ALLOW":
        return None
    return Grant(binding.principal[len("User:"):], binding.restype.name, binding.name, binding.operation.name,
                 binding.resource_pattern_type.name)


@dataclass
class AclSummary:
    created: int = 0
    deleted: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"acls: created {self.created}, deleted {self.deleted}, unchanged {self.unchanged}"


def apply_acls(streams: StreamsConfig, *, timeout: float = 30.0, admin=None) -> AclSummary:
    """Make the broker's ALLOW bindings of framelog's principals equal the registry (``config.streams``)."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    from framelog.streams.admin import admin_client

    admin = admin or admin_client(streams.kafka, streams.stack)
    wanted = set(registry(streams.topics.pipeline, streams.topics.priorities))
    ours = set(principals(streams.topics.pipeline))
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    present: dict[Grant, object] = {}
    for binding in admin.describe_acls(everything, request_timeout=timeout).result():
        grant = _as_grant(binding)
        if grant is not None and grant.principal in ours:
            present[grant] = binding
    missing = sorted(wanted - set(present))
    stale = [present[g] for g in sorted(set(present) - wanted)]
    if missing:
        for fut in admin.create_acls([_binding(g) for g in missing], request_timeout=timeout).values():
            fut.result()
    if stale:
        filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                                    b.permission_type) for b in stale]
        for fut in admin.delete_acls(filters, request_timeout=timeout).values():
            fut.result()
    return AclSummary(len(missing), len(stale), len(wanted) - len(missing))


def upsert_scram_users(admin, users: list[str], passwords: dict[str, str], *, timeout: float,
                       only_missing: bool = False) -> int:
    """Write SCRAM credentials (both mechanisms) of ``users``; with ``only_missing`` just those absent.

    Returns how many credentials were written."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    have: set[tuple[str, str]] = set()
    if only_missing:
        try:
            described = admin.describe_user_scram_credentials(request_timeout=timeout).result()
        except KafkaException:
            described = {}
        for user, desc in described.items():
            have |= {(user, info.mechanism.name.replace("_", "-")) for info in desc.scram_credential_infos}
    written = 0
    for m in SCRAM_MECHANISMS:          # one request per mechanism: a request may alter a user only once
        upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism[m.replace("-", "_")],
                                                                          SCRAM_ITERATIONS),
                                                passwords[user].encode())
                   for user in users if (user, m) not in have]
        if upserts:
            for fut in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).values():
                fut.result()
        written += len(upserts)
    return written
