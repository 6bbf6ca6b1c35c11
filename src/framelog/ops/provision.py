"""`framelog init`: create what a deployment's services share, once, before they start.

The local stack does this itself (`stack up` creates the bucket, `topics create`
the topics, the embedded sink its tables). In docker-compose a one-shot ``init``
service runs it and every other framelog service waits for it to complete:

* the Kafka topics of the registry (streams/admin.py, idempotent),
* the object-storage bucket (sinks/s3.py, idempotent),
* the ClickHouse migrations, on a ClickHouse server (the sink applies them too at
  start, but the API queries the tables before the sink may have run). An
  embedded chdb engine belongs to the process that opens it, so it is left to
  the sink there.

Each step is retried while its service is still starting (connection refused,
timeouts, 5xx) until one shared deadline; any other error (bad credentials, a
changed migration) fails at once.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from framelog.core.config import Config
from framelog.core.errors import FramelogError
from framelog.stack.process import wait_until
from framelog.streams.admin import TopicsSummary

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_INTERVAL = 1.0          # seconds between attempts on a service that is still starting
STEP_TIMEOUT = 30.0           # one attempt's own network timeout, at most


class InitError(FramelogError):
    """A shared resource could not be created before the deadline."""


@dataclass
class InitReport:
    topics: TopicsSummary
    bucket: str
    bucket_created: bool
    migrations: list[int] | None      # None: left to the embedded engine's sink

    def lines(self) -> list[str]:
        lines = [f"topics: {line.strip()}" for line in self.topics.lines()]
        lines.append(f"bucket {self.bucket}: {'created' if self.bucket_created else 'exists'}")
        if self.migrations is None:
            lines.append("clickhouse: embedded engine, the sink applies the migrations when it opens it")
        else:
            applied = ", ".join(f"{v:04d}" for v in self.migrations) or "none pending"
            lines.append(f"clickhouse migrations applied: {applied}")
        return lines


def still_starting(exc: BaseException) -> bool:
    """True for the errors of a service that is not up yet; worth another attempt."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from clickhouse_connect.driver.exceptions import OperationalError
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(exc, (OSError, BotoConnectionError, HTTPClientError, OperationalError)):
        return True
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) >= 500
    if isinstance(exc, KafkaException) and isinstance(exc.args[0], KafkaError):
        err = exc.args[0]
        return err.retriable() or err.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
                                                 KafkaError._ALL_BROKERS_DOWN, KafkaError.NOT_COORDINATOR,
                                                 KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                                 KafkaError.COORDINATOR_NOT_AVAILABLE)
    return False


def retry_until(what: str, step: Callable[[float], T], deadline: float) -> T:
    """Run ``step(timeout)`` until it returns, retrying while ``still_starting``, until ``deadline``."""
    outcome: dict[str, T] = {}
    last: list[BaseException] = []

    def attempt() -> bool:
        try:
            outcome["value"] = step(max(1.0, min(STEP_TIMEOUT, deadline - time.monotonic())))
            return True
        except Exception as exc:            # noqa: BLE001 - classified right here
            if not still_starting(exc):
                raise InitError(f"{what}: {exc}") from exc
            if not last:
                log.warning("waiting for %s: %s", what, exc)
            last[:] = [exc]
            return False

    if not wait_until(attempt, max(0.0, deadline - time.monotonic()), interval=RETRY_INTERVAL):
        raise InitError(f"{what} not reachable before the deadline: {last[0] if last else 'no attempt'}")
    return outcome["value"]


def _topics(config: Config, timeout: float) -> TopicsSummary:
    from framelog.streams.acls import apply_acls, upsert_scram_users
    from framelog.streams.admin import admin_client, create_topics
    from framelog.streams.kafka_auth import password_env_var, principals

    admin = admin_client(config.kafka, config.stack)
    summary = create_topics(config.streams, timeout=timeout, admin=admin)
    # compose: the principals' passwords come from the environment (the local stack writes them itself)
    passwords = {p: os.environ[password_env_var(p)] for p in principals(config.pipeline)
                 if os.environ.get(password_env_var(p))}
    if passwords:
        upsert_scram_users(admin, sorted(passwords), passwords, timeout=timeout)
    # every principal's grants (streams/acls.py)
    log.info("%s", apply_acls(config.streams, timeout=timeout, admin=admin))
    return summary


def _bucket(config: Config, timeout: float) -> bool:
    from framelog.sinks.s3 import ensure_bucket, ensure_buckets, s3_client

    client = s3_client(config.object_storage, config.stack.state_dir, connect_timeout=min(timeout, 5.0),
                       read_timeout=timeout, max_attempts=1)
    created = ensure_bucket(client, config.object_storage.bucket)
    ensure_buckets(client, config.object_storage)
    return created


def _migrations(config: Config, _timeout: float) -> list[int]:   # clickhouse-connect's own timeouts
    from framelog.sinks.clickhouse.client import connect
    from framelog.sinks.clickhouse.migrations import apply_migrations

    client = connect(config.clickhouse_dsn, config.clickhouse.database)
    try:
        return apply_migrations(client, config.analytics)
    finally:
        client.close()


def initialise(config: Config, *, timeout: float) -> InitReport:
    """Topics, bucket and (server) ClickHouse tables, all idempotent, within ``timeout`` seconds."""
    from framelog.sinks.clickhouse.client import is_embedded

    deadline = time.monotonic() + timeout
    topics = retry_until(f"kafka at {config.kafka.bootstrap_servers}", lambda t: _topics(config, t), deadline)
    created = retry_until(f"object storage at {config.object_storage.endpoint_url}",
                          lambda t: _bucket(config, t), deadline)
    migrations = None
    if not is_embedded(config.clickhouse_dsn):
        migrations = retry_until("clickhouse", lambda t: _migrations(config, t), deadline)
    return InitReport(topics, config.object_storage.bucket, created, migrations)
