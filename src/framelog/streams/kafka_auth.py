"""Who a Kafka client is, and the one place its connection settings come from.

Every process authenticates as the principal of what it is: the HTTP API as ``api``, the
analytics sink as ``sink`` (also when the API hosts it), each worker group as
``worker-<group>``, operators' commands, the stack and the tests as ``admin``. The
principal travels in ``config.kafka.principal`` (``as_principal``); the password comes
from FRAMELOG_KAFKA_USERNAME/PASSWORD when set (compose: each service its own), else from
``<state_dir>/credentials/kafka.json`` (core/service_credentials.py). What each principal may
touch is streams/acls.py.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from framelog.core.config import KafkaConfig, PipelineConfig, StackConfig
from framelog.core.kafka_nodes import bootstrap_servers
from framelog.core.service_credentials import kafka_password

ADMIN = "admin"          # super user: topics, ACLs, SCRAM users, operators' tools, tests' probes
API = "api"
SINK = "sink"
BROKER = "broker"        # the broker's own inter-broker identity (super user)
CONTROLLER = "controller"  # PLAIN user of the controller listener, static in server.properties (super user)
WORKER_PREFIX = "worker-"
ENV_USERNAME, ENV_PASSWORD = "FRAMELOG_KAFKA_USERNAME", "FRAMELOG_KAFKA_PASSWORD"


def worker_principal(group: str) -> str:
    return f"{WORKER_PREFIX}{group}"


def principals(pipeline: PipelineConfig) -> list[str]:
    """Every SCRAM user of the stack (services first, then the broker's own); the worker groups follow
    the pipeline's stages (``config.pipeline``)."""
    from framelog.pipeline.worker import groups

    return [ADMIN, API, SINK, *(worker_principal(g) for g in groups(pipeline)), BROKER]


def password_env_var(principal: str) -> str:
    """Where compose's init one-shot finds each principal's password: FRAMELOG_KAFKA_PASSWORD_WORKER_CDN, ..."""
    return f"FRAMELOG_KAFKA_PASSWORD_{principal.upper().replace('-', '_')}"


def as_principal(kafka: KafkaConfig, principal: str) -> KafkaConfig:
    """The same kafka section (``config.kafka``), for a process (or one client) acting as ``principal``."""
    return dataclasses.replace(kafka, principal=principal)


def credentials(kafka: KafkaConfig, state_dir: Path) -> tuple[str, str]:
    """(username, password) of this process: the environment's pair, else the state dir's
    (``config.kafka, config.stack.state_dir``)."""
    username, password = os.environ.get(ENV_USERNAME), os.environ.get(ENV_PASSWORD)
    if username and password:
        return username, password
    return kafka.principal, kafka_password(state_dir, kafka.principal)


def client_settings(kafka: KafkaConfig, stack: StackConfig) -> dict[str, Any]:
    """librdkafka settings every confluent-kafka client starts from: brokers and authentication
    (``config.kafka, config.stack``: the stack's nodes and the state dir's credentials)."""
    username, password = credentials(kafka, stack.state_dir)
    return {"bootstrap.servers": bootstrap_servers(kafka, stack),
            "security.protocol": kafka.security_protocol,
            "sasl.mechanism": kafka.sasl_mechanism,
            "sasl.username": username,
            "sasl.password": password}


def faust_credentials(kafka: KafkaConfig, state_dir: Path) -> Any:
    """The same identity for Faust (aiokafka): SASL with the configured SCRAM mechanism."""
    import ssl

    import faust

    username, password = credentials(kafka, state_dir)
    context = ssl.create_default_context() if kafka.security_protocol == "SASL_SSL" else None
    return faust.SASLCredentials(username=username, password=password, mechanism=kafka.sasl_mechanism,
                                 ssl_context=context)
