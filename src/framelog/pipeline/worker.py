"""`framelog worker`: run the intake agent and the pipeline stages.

``framelog worker --stage transcoding`` runs one consumer group in this
process (scale a stage by starting more of these). Without ``--stage`` it
supervises one child process per group, restarting a child that dies, which
is what the demo and a single-machine install want.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from framelog.core.config import Config, PipelineConfig
from framelog.core.logs import configure_logging

if TYPE_CHECKING:
    import faust

    from framelog.pipeline.agents.chunks import ChunkPlacement
    from framelog.pipeline.jobs.base import JobSettings

log = logging.getLogger(__name__)

INTAKE = "intake"
CDN = "cdn"            # edge purges/warms and edge metrics (pipeline/agents/cdn.py)
TIERING = "tiering"    # access counts, tier decisions, storage-class moves (pipeline/agents/tiering.py)
POPULARITY = "popularity"  # views per video -> CacheWarm past popular_view_count (pipeline/agents/cdn.py)
WEBHOOKS = "webhooks"      # video events -> signed HTTP deliveries to registered endpoints (pipeline/webhooks.py)
CHUNKS = "chunks"          # chunk jobs of chunked transcoding: one chunk's ladder per job (pipeline/agents/chunks.py)
STITCH = "stitch"          # the chunk ledger per video: retries, growing playlists, the stitch (same module)
RESTART_BACKOFF = 2.0
PLACEMENT_TIMEOUT = 3.0    # s to describe the chunk workers' group before jobs are placed by index instead
STALL_EXIT = 75            # EX_TEMPFAIL: the stall watchdog gave up on this process; start it again


def groups(pipeline: PipelineConfig) -> list[str]:
    """Every worker group: intake, one per stage of ``config.pipeline``, then the others."""
    return [INTAKE, *pipeline.stage_names, CDN, TIERING, POPULARITY, WEBHOOKS, CHUNKS, STITCH]


def run_worker(config: Config, stages: Sequence[str] | None = None) -> int:
    wanted = list(stages or groups(config.pipeline))
    unknown = [s for s in wanted if s not in groups(config.pipeline)]
    if unknown:
        print(f"framelog: error: unknown stage(s) {unknown}; known: {groups(config.pipeline)}", file=sys.stderr)
        return 2
    if len(wanted) == 1:
        return run_group(config, wanted[0])
    return supervise(config, wanted)


# groups whose S3 work is renditions and thumbnails at most (tiering moves them; the others touch no
# object): they run as the narrow "media" identity, which cannot read keys/
NARROW_S3_GROUPS = frozenset({TIERING, CDN, POPULARITY, WEBHOOKS})


def run_group(config: Config, group: str) -> int:
    """Build the Faust app of one consumer group and run it until stopped."""
    from faust.worker import Worker

    from framelog.pipeline.agents.pipeline import IntakeSettings, register_intake, register_stage
    from framelog.pipeline.agents.stage import StageRunner, StageSettings
    from framelog.schemas.codec import default_codec
    from framelog.sinks.object_store import ObjectStore
    from framelog.streams import topics
    from framelog.streams.app import create_app
    from framelog.streams.emitter import AsyncEmitter
    from framelog.streams.kafka_auth import as_principal, worker_principal

    # this group's own Kafka principal (streams/acls.py)
    config = dataclasses.replace(config, kafka=as_principal(config.kafka, worker_principal(group)))
    if group in NARROW_S3_GROUPS:                             # no access to keys/: they do not need it
        config = dataclasses.replace(config, object_storage=dataclasses.replace(config.object_storage,
                                                                                identity="media"))
    configure_logging(group)
    from prometheus_client import start_http_server
    try:
        port = config.stack.worker_metrics_port + groups(config.pipeline).index(group)
        start_http_server(port, addr=config.stack.metrics_host)
    except OSError as exc:      # a second worker of the same stage on this host: metrics from the first
        logging.getLogger(__name__).warning("metrics port busy (%s); not exporting from this worker", exc)
    if group == WEBHOOKS:               # a plain consumer: it commits only what is delivered or parked on the log
        from framelog.pipeline.webhooks import WebhookSettings, run_webhooks

        return run_webhooks(WebhookSettings(config.streams, config.webhooks, config.security,
                                            config.pipeline.stage_names[0]))
    app = create_app(config.streams, group)
    codec = default_codec(config.streams)
    emitter = AsyncEmitter(config.streams, codec)

    def new_store() -> ObjectStore:      # a client of its own for each component
        return ObjectStore(config.object_storage, config.stack.state_dir)

    if group == INTAKE:
        register_intake(app, IntakeSettings(config.pipeline.stages[0].name, config.priorities,
                                            partitions(config, topics.UPLOADS)), codec, emitter, new_store())
    elif group == CDN:
        from framelog.pipeline.agents.cdn import CdnCommands, CdnSettings, register_cdn
        from framelog.pipeline.agents.cdn_metrics import CdnMetrics, EdgeLogExporter
        from framelog.processors.tokens import load_or_create_secret
        from framelog.sinks.edges.cache_commands import EdgeCacheSettings, edge_caches, shield_cache

        secret = load_or_create_secret(config.security, config.stack.state_dir)
        edges = EdgeCacheSettings(config.cdn, config.stack, config.security, config.caching)
        commands = CdnCommands(config.caching, edge_caches(edges, secret=secret), shield_cache(edges, secret=secret))
        register_cdn(app, CdnSettings(config.caching, partitions(config, topics.CDN_COMMANDS)), codec, emitter,
                     commands=commands, exporter=EdgeLogExporter(config.stack, config.cdn, CdnMetrics(config.metrics)))
    elif group == POPULARITY:
        from framelog.pipeline.agents.cdn import PopularitySettings, register_popularity, state_topics
        from framelog.streams.admin import create_topics

        popularity = PopularitySettings(config.caching, config.cdn, partitions(config, topics.PLAYBACK_EVENTS))
        create_topics(config.streams, state_topics(popularity.partitions))
        register_popularity(app, popularity, codec, emitter)
    elif group == TIERING:
        from framelog.pipeline.agents.tiering import (
            SOURCES,
            TieringSettings,
            changelog_topic,
            register_tiering,
            source_partitions,
        )
        from framelog.pipeline.agents.tiering_metrics import TieringMetrics
        from framelog.sinks.object_store import vault_store
        from framelog.sinks.tier_mover import TierMover
        from framelog.streams.admin import create_topics
        tiering = TieringSettings(config.tiering, source_partitions({t: partitions(config, t) for t in SOURCES}),
                                  config.kafka, config.stack)
        create_topics(config.streams, [changelog_topic(tiering.partitions)])
        mover = TierMover(new_store(), vault_store(config.object_storage, config.stack.state_dir))
        register_tiering(app, tiering, codec, emitter, mover,
                         TieringMetrics(config.tiering, config.metrics, config.object_storage.region))
    elif group == CHUNKS:
        from framelog.pipeline.agents.chunks import ChunkRunner, register_chunk_worker
        from framelog.pipeline.jobs.store import S3ResultStore

        register_chunk_worker(app, ChunkRunner(job_settings(config), emitter, S3ResultStore(new_store())),
                              partitions(config, topics.CHUNK_REQUESTS), codec, emitter)
    elif group == STITCH:
        from framelog.pipeline.agents.chunks import StitchSettings, register_stitch, stitch_changelog
        from framelog.streams.admin import create_topics

        stitch = StitchSettings(config.pipeline, config.priorities, config.media, config.hls, config.cdn,
                                partitions(config, topics.CHUNK_TRANSITIONS))
        create_topics(config.streams, [stitch_changelog(stitch.transition_partitions)])
        register_stitch(app, stitch, codec, emitter, new_store(), chunk_placement(config))
    else:
        from framelog.pipeline.agents.pipeline import asset_publisher
        from framelog.pipeline.jobs.registry import handler_for
        from framelog.pipeline.jobs.store import S3ResultStore

        stage = config.pipeline.stage(group)
        last = group == config.pipeline.stage_names[-1]
        fan_out = None
        if group == "transcoding" and config.media.transcoding.chunked:
            from framelog.pipeline.agents.chunks import chunk_fan_out

            fan_out = chunk_fan_out(chunk_placement(config), emitter, new_store())
        runner = StageRunner(StageSettings(config.pipeline, config.priorities), stage,
                             handler_for(job_settings(config), group, new_store()), emitter,
                             S3ResultStore(new_store()),
                             on_complete=asset_publisher(config.cdn, emitter, new_store()) if last else None,
                             fan_out=fan_out)
        register_stage(app, config.priorities, stage, runner, codec, emitter,
                       {name: partitions(config, name) for _, name in topics.stage_topics(config.priorities, group)})

    watch_stalls(app, config, group)
    worker = Worker(app, loglevel="INFO", quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()      # exits the process when the worker stops
    finally:
        emitter.close()
    return 0


def partitions(config: Config, topic: str) -> int:
    """The partition count of ``topic``: the topic registry's, else ``kafka.default_partitions``."""
    from framelog.streams import topics

    return topics.topic_spec(topic, config.topics).partitions or config.kafka.default_partitions


def chunk_placement(config: Config) -> ChunkPlacement:
    """Where the transcoding fan-out and the stitch's retries put chunk jobs: on the least loaded chunk worker,
    as the broker describes the ``framelog-chunks`` group (one admin client per process, reused)."""
    from framelog.ops.groups import describe_groups
    from framelog.pipeline.agents.chunks import ChunkPlacement
    from framelog.processors.chunk_placement import MemberLoad
    from framelog.streams import topics
    from framelog.streams.admin import admin_client

    admin = admin_client(config.kafka, config.stack)

    def loads() -> list[MemberLoad]:
        [report] = describe_groups(config.kafka, config.stack, [f"framelog-{CHUNKS}"], timeout=PLACEMENT_TIMEOUT,
                                   admin=admin)
        return report.member_loads(topics.CHUNK_REQUESTS)

    return ChunkPlacement(partitions(config, topics.CHUNK_REQUESTS), loads)


def job_settings(config: Config) -> JobSettings:
    """The sections the stage jobs read (pipeline/jobs)."""
    from framelog.pipeline.jobs.base import JobSettings

    return JobSettings(config.pipeline, config.upload_limits, config.media, config.hls, config.cdn, config.caching)


def stall_limit(config: Config, group: str) -> float:
    """Seconds a member of ``group`` may own a partition with lag and not commit: ``kafka.stall_timeout``
    on top of the longest one record may legitimately take (a stage's timeout and its kill grace; the
    chunk workers and the stitch run transcoding's; a CDN command's wait for an edge), so a long job never
    looks like a stall."""
    from framelog.pipeline.jobs.chunks import STAGE as CHUNKED_STAGE

    stages = {s.name: s for s in config.pipeline.stages}
    stage = stages.get(group) or (stages.get(CHUNKED_STAGE) if group in (CHUNKS, STITCH) else None)
    longest = stage.timeout + 2 * config.pipeline.kill_grace if stage is not None else 0.0
    if group == CDN:           # a command waits this long for an edge it cannot reach
        from framelog.pipeline.agents.cdn import EDGE_RETRY_FOR
        longest = EDGE_RETRY_FOR
    return config.kafka.stall_timeout + longest


def watch_stalls(app: faust.App, config: Config, group: str) -> None:
    """Once the app runs, a StallWatchdog (pipeline/stall_watch.py) over the partitions this member owns, its
    tables' changelogs aside (read to restore, never committed), and those of its agents' topics nobody owns;
    a stall exits the process with STALL_EXIT, and its supervisor (``supervise``, or the container's restart
    policy) starts it again."""
    from framelog.pipeline.stall_watch import StallWatchdog

    def owned() -> set[tuple[str, int]]:
        changelogs = app.tables.changelog_topics
        return {(tp.topic, tp.partition) for tp in list(app.consumer.assignment()) if tp.topic not in changelogs}

    def exit_stalled(stalled: list[tuple[str, int]]) -> None:
        log.error("worker %s: %s behind and not committed for %.0fs; exiting so the group is joined again",
                  group, ", ".join(f"{t}[{p}]" for t, p in stalled), limit)
        logging.shutdown()
        os._exit(STALL_EXIT)       # like a kill -9: nothing acknowledged is in flight (emits await their acks)

    limit = stall_limit(config, group)

    @app.task
    async def stall_watchdog() -> None:
        inputs = {name for agent in app.agents.values() for name in getattr(agent.channel, "topics", ())}
        StallWatchdog(config.kafka, config.stack, app.conf.id, owned, inputs, limit, exit_stalled).start()


def supervise(config: Config, wanted: Sequence[str]) -> int:
    """Run each group as a child process; restart children that die."""
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def start(group: str) -> None:
        children[group] = subprocess.Popen([sys.executable, "-m", "framelog.cli.main", "--state-dir",
                                            str(config.stack.state_dir), "worker", "--stage", group],
                                           env=os.environ.copy())
        print(f"worker {group}: pid {children[group].pid}", flush=True)

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for group in wanted:
        start(group)
    while not stopping:
        for group, proc in list(children.items()):
            if proc.poll() is not None and not stopping:
                print(f"worker {group} exited with {proc.returncode}; restarting", flush=True)
                time.sleep(RESTART_BACKOFF)
                start(group)
        time.sleep(0.5)
    for proc in children.values():
        proc.terminate()
    deadline = time.monotonic() + 30
    for proc in children.values():
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0
