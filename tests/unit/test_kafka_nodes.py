"""The local stack's Kafka nodes (issue 14 pt 1): ports per node, the state dir's record, bootstrap, replication.

Pure: no broker is started (tests/integration/test_kafka_cluster.py runs three); stopping a cluster
is tried on stand-in child processes."""
import dataclasses
import signal
import subprocess
import sys

import pytest

from framelog.cli import main as cli
from framelog.core.kafka_nodes import bootstrap_servers, node_ports, record_brokers, replication, stack_brokers
from framelog.stack import cli as stack_cli
from framelog.stack import kafka as kafka_stack
from framelog.stack.kafka import Kafka, finish_cluster_stop
from framelog.stack.manager import Stack
from framelog.stack.process import StackError


@pytest.fixture
def cfg3(cfg, tmp_path):
    return dataclasses.replace(cfg, stack=dataclasses.replace(cfg.stack, state_dir=tmp_path),
                               kafka=dataclasses.replace(cfg.kafka, brokers=3))


def test_each_node_its_own_ports_moving_with_the_stack(cfg3):
    ports = [node_ports(cfg3.stack, i) for i in (1, 2, 3)]
    assert ports[0] == (cfg3.stack.kafka_port, cfg3.stack.kafka_controller_port)
    assert len({p for pair in ports for p in pair}) == 6
    stack = cfg3.stack
    moved = dataclasses.replace(cfg3, stack=dataclasses.replace(stack, kafka_port=stack.kafka_port + 97,
                                                                kafka_controller_port=stack.kafka_controller_port + 97))
    assert [node_ports(moved.stack, i) for i in (1, 2, 3)] == [(a + 97, b + 97) for a, b in ports]


def test_replication_follows_the_cluster():
    from framelog.core.config import DEFAULT_CONFIG_PATH, load_config
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert cfg.kafka.brokers == 1                            # the demo's single broker stays the default
    assert replication(cfg.kafka, 1) == (1, 1)
    assert replication(cfg.kafka, 2) == (2, 1)
    assert replication(cfg.kafka, 3) == (3, 2)
    assert replication(cfg.kafka, 5) == (3, 2)


def test_the_state_dir_remembers_its_shape(cfg3):
    assert stack_brokers(cfg3.kafka, cfg3.stack) == 3
    record_brokers(cfg3.stack.state_dir, 3)
    one = dataclasses.replace(cfg3, kafka=dataclasses.replace(cfg3.kafka, brokers=1))
    assert stack_brokers(one.kafka, one.stack) == 3
    assert [n.name for n in Stack(one).kafka_nodes] == ["kafka", "kafka-2", "kafka-3"]   # down stops them all
    with pytest.raises(StackError, match="cluster of 3 broker"):
        Stack(one, brokers=1).up()


def test_clients_bootstrap_from_every_node(cfg3):
    assert bootstrap_servers(cfg3.kafka, cfg3.stack) == ",".join(f"{cfg3.stack.host}:{node_ports(cfg3.stack, i)[0]}"
                                                                 for i in (1, 2, 3))
    elsewhere = dataclasses.replace(cfg3, kafka=dataclasses.replace(cfg3.kafka, bootstrap_servers="k1:9092,k2:9092"))
    assert bootstrap_servers(elsewhere.kafka, elsewhere.stack) == "k1:9092,k2:9092"


def test_node_properties_name_every_voter_and_the_replication(cfg3):
    node = Kafka(cfg3, 2, 3)
    props = dict(line.split("=", 1) for line in node.server_properties().splitlines() if "=" in line)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == ",".join(
        f"{i}@{cfg3.stack.host}:{node_ports(cfg3.stack, i)[1]}" for i in (1, 2, 3))
    assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("3", "2")
    assert props["offsets.topic.replication.factor"] == "3" and props["transaction.state.log.min.isr"] == "2"
    assert props["log.dirs"].endswith("/kafka-2/data")
    single = dict(line.split("=", 1) for line in Kafka(cfg3).server_properties().splitlines() if "=" in line)
    assert "controller.quorum.voters" not in single and single["default.replication.factor"] == "1"


def test_stack_up_takes_a_broker_count(monkeypatch):
    seen = {}
    monkeypatch.setattr(stack_cli, "stack_up", lambda config, brokers=None: seen.setdefault("brokers", brokers) and 0)
    cli.main(["stack", "up", "--brokers", "3"])
    assert seen["brokers"] == 3


# ------------------------------------------------------------ stopping a cluster
# Stand-ins for the node processes: real children, one that exits on SIGTERM and one that ignores it
# (a node whose controlled shutdown waits for a quorum that is gone).
STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")


def _stand_in(stubborn: bool) -> subprocess.Popen:
    if not stubborn:
        return subprocess.Popen(["sleep", "600"])
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"   # its handler is in place
    return proc


def _stop_together(cfg3, stubborn: list[bool], timeout: float) -> dict[str, str]:
    nodes = [Kafka(cfg3, i, len(stubborn)) for i in range(1, len(stubborn) + 1)]
    procs = [_stand_in(s) for s in stubborn]
    try:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        return finish_cluster_stop(nodes, {n.name: p.pid for n, p in zip(nodes, procs)}, timeout)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_node_left_without_a_quorum_is_killed_after_a_grace_not_the_stop_timeout(cfg3, monkeypatch):
    monkeypatch.setattr(kafka_stack, "QUORUM_LOST_GRACE", 0.5)
    outcome = _stop_together(cfg3, [False, True, False], timeout=600)   # a 600 s wait would hit the test timeout
    assert outcome["kafka"] == outcome["kafka-3"] == "stopped"
    assert outcome["kafka-2"].startswith("killed (its controlled shutdown needed a controller quorum")


def test_nodes_that_still_hold_a_quorum_get_the_whole_stop_timeout(cfg3, monkeypatch):
    monkeypatch.setattr(kafka_stack, "QUORUM_LOST_GRACE", 600)
    outcome = _stop_together(cfg3, [True, True, False], timeout=1)
    assert outcome["kafka-3"] == "stopped"
    assert outcome["kafka"] == outcome["kafka-2"] == "killed (did not stop within 1s of SIGTERM)"


def test_a_single_node_is_its_own_quorum(cfg3):
    single = dataclasses.replace(cfg3, kafka=dataclasses.replace(cfg3.kafka, brokers=1))
    assert _stop_together(single, [False], timeout=30) == {"kafka": "stopped"}
    assert _stop_together(single, [True], timeout=1) == {"kafka": "killed (did not stop within 1s of SIGTERM)"}
