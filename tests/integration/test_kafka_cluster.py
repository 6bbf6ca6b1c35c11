"""A replicated log (issue 14 pt 1): three KRaft nodes from the same jars, RF 3, min ISR 2, a broker killed
with -9 while an idempotent acks=all producer writes, nothing acknowledged lost or doubled.

The cluster runs in its own state dir on its own ports (the session stack's ports moved by
CLUSTER_PORT_SHIFT), so the session's single-broker stack is untouched.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource, ResourceType

from framelog.core.config import Config
from framelog.core.kafka_nodes import node_addresses, recorded_brokers
from framelog.stack.manager import Stack
from framelog.stack.process import pid_alive, port_open
from framelog.streams.admin import admin_client, create_topics, replication_factors
from framelog.streams.producer import producer_config
from framelog.streams.topics import TopicSpec
from tests.integration.support import read_values, write_values

pytestmark = pytest.mark.integration

CLUSTER_PORT_SHIFT = 50      # clear of every stack's ports (helpers move theirs by multiples of 97, tests by 1100)
PARTITIONS = 6
RECORDS = 6000


def cluster_config(config: Config, state_dir) -> Config:
    stack = dataclasses.replace(config.stack, state_dir=state_dir,
                                kafka_port=config.stack.kafka_port + CLUSTER_PORT_SHIFT,
                                kafka_controller_port=config.stack.kafka_controller_port + CLUSTER_PORT_SHIFT)
    kafka = dataclasses.replace(config.kafka, brokers=3, bootstrap_servers=f"{stack.host}:{stack.kafka_port}")
    return dataclasses.replace(config, stack=stack, kafka=kafka)


@pytest.fixture(scope="module")
def cluster(config, tmp_path_factory) -> Iterator[Stack]:
    cfg = cluster_config(config, tmp_path_factory.mktemp("kafka3"))
    stack = Stack(cfg, brokers=3)
    launched = [(node, node.launch()) for node in stack.kafka_nodes]   # all first: the quorum needs two
    try:
        for node, was_launched in launched:
            node.finish_start(was_launched, timeout=180)
        yield stack
    finally:
        stack.down()


def test_three_nodes_each_with_its_own_port_dir_and_id(cluster):
    cfg = cluster.config
    assert [n.node_id for n in cluster.kafka_nodes] == [1, 2, 3]
    assert len({n.port for n in cluster.kafka_nodes} | {n.controller_port for n in cluster.kafka_nodes}) == 6
    assert len({n.data_dir for n in cluster.kafka_nodes}) == 3
    assert all(n.libs_dir == cluster.kafka.libs_dir for n in cluster.kafka_nodes)   # the same jars
    assert recorded_brokers(cfg.stack.state_dir) == 3
    md = admin_client(cfg.kafka, cfg.stack).list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    # a client configured with the first node's address bootstraps from all three
    assert producer_config(cfg.kafka, cfg.stack)["bootstrap.servers"] == ",".join(node_addresses(cfg.kafka, cfg.stack))
    settings = producer_config(cfg.kafka, cfg.stack)
    assert settings["acks"] == "all" and settings["enable.idempotence"] is True


def test_topics_get_replication_3_and_min_isr_2(cluster):
    cfg = cluster.config
    spec = TopicSpec(f"test.cluster.{uuid.uuid4().hex[:8]}", ("PlaybackEvent",), partitions=PARTITIONS)
    create_topics(cfg.streams, [spec])
    admin = admin_client(cfg.kafka, cfg.stack)
    assert replication_factors(admin, [spec.name]) == {spec.name: 3}
    resource = ConfigResource(ResourceType.TOPIC, spec.name)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["min.insync.replicas"].value == "2"


def test_kill9_one_broker_while_producing_loses_nothing(cluster):
    cfg = cluster.config
    spec = TopicSpec(f"test.cluster.{uuid.uuid4().hex[:8]}", ("PlaybackEvent",), partitions=PARTITIONS)
    create_topics(cfg.streams, [spec])
    md = admin_client(cfg.kafka, cfg.stack).list_topics(timeout=10)
    victim_id = md.topics[spec.name].partitions[0].leader          # a leader: its partitions must fail over
    victim = next(n for n in cluster.kafka_nodes if n.node_id == victim_id)

    producer = Producer(producer_config(cfg.kafka, cfg.stack))     # framelog's settings: idempotent, acks=all
    acked: list[bytes] = []
    failed: list[str] = []
    lock = threading.Lock()

    def report(err, msg) -> None:
        with lock:
            (failed.append(str(err)) if err else acked.append(msg.value()))

    killed_at = None
    for i in range(RECORDS):
        value = f"{i:06d}".encode()
        producer.produce(spec.name, value=value, key=value, on_delivery=report)
        producer.poll(0)
        if i == RECORDS // 3:
            producer.flush(30)                  # some records acknowledged before the crash ...
            assert victim.kill9() == "killed"   # ... then a leader dies with records in flight
            killed_at = time.monotonic()
        if i % 200 == 0:
            time.sleep(0.01)                    # a steady stream across the failover, not one burst
    assert producer.flush(120) == 0, "records still in flight two minutes after the kill"
    assert killed_at is not None
    assert not failed, failed[:5]
    assert len(acked) == RECORDS

    # every acknowledged record is there, exactly once, with the victim still down
    assert not victim.is_running()
    seen = read_values(cfg, spec.name, len(acked), timeout=90)
    assert len(seen) == len(set(seen)), "a record was written twice"
    assert set(seen) == set(acked)

    # the partitions it led moved to the two survivors; it rejoins when restarted
    md = admin_client(cfg.kafka, cfg.stack).list_topics(timeout=10)
    assert all(p.leader in {1, 2, 3} - {victim_id} for p in md.topics[spec.name].partitions.values())
    victim.start(timeout=120)
    assert sorted(admin_client(cfg.kafka, cfg.stack).list_topics(timeout=10).brokers) == [1, 2, 3]


def test_down_stops_all_three_and_they_come_back_with_every_record(cluster):
    """``stack down`` of a Stack given no broker count stops every node the state dir remembers.

    All three get SIGTERM at once. A node whose controlled shutdown the quorum had not approved when
    the other two exited cannot stop cleanly (stack/kafka.finish_cluster_stop): at most that one is
    killed, and the restarted cluster still holds every record written before.
    """
    cfg = cluster.config
    spec = TopicSpec(f"test.cluster.{uuid.uuid4().hex[:8]}", ("PlaybackEvent",), partitions=PARTITIONS)
    create_topics(cfg.streams, [spec])
    written = [f"{i:05d}".encode() for i in range(1000)]
    write_values(cfg, spec.name, written)

    pids = [n.pid() for n in cluster.kafka_nodes]
    assert all(pids)
    plain = Stack(dataclasses.replace(cfg, kafka=dataclasses.replace(cfg.kafka, brokers=1)))
    assert len(plain.kafka_nodes) == 3
    outcome = plain.down()
    node_outcomes = [outcome[n.name] for n in cluster.kafka_nodes]
    assert node_outcomes.count("stopped") >= 2, outcome
    assert all(o == "stopped" or o.startswith("killed (its controlled shutdown needed a controller quorum")
               for o in node_outcomes), outcome
    assert not any(pid_alive(p) for p in pids if p)
    assert not any(port_open(cfg.stack.host, n.port) for n in cluster.kafka_nodes)

    launched = [(node, node.launch()) for node in cluster.kafka_nodes]
    for node, was_launched in launched:
        node.finish_start(was_launched, timeout=180)
    assert sorted(read_values(cfg, spec.name, len(written), timeout=90)) == written
