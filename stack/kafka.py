"""The embedded Kafka broker: Apache Kafka 4.3 in KRaft mode, one combined broker+controller.

First use fetches the jars from Maven Central with ``mvn dependency:copy-dependencies``
(the pom next to this file) into ``<state>/kafka/libs``; later starts skip the
fetch while the jars match the pom. The data directory is formatted once
(``kafka.tools.StorageTool format --standalone``) and never again while
``meta.properties`` exists, so data survives ``down``/``up``.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from framelog.stack.process import Component, StackError, port_open, run_checked

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"
JVM_HEAP = "512m"
FETCH_TIMEOUT = 900.0  # a cold ~/.m2 downloads ~45 MB; generous on purpose


def new_cluster_id() -> str:
    """KRaft cluster id: url-safe base64 of a random uuid, without padding (22 chars)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise StackError("kafka", "java not found (install a JDK 17+ or set JAVA_HOME)")
    return found


class Kafka(Component):
    name = "kafka"

    def __init__(self, config):
        super().__init__(config)
        self.port = config.stack.kafka_port
        self.controller_port = config.stack.kafka_controller_port
        self.libs_dir = self.dir / "libs"
        self.data_dir = self.dir / "data"
        self.properties_path = self.dir / "server.properties"
        self.fetch_log = self.dir / "mvn.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def bootstrap_servers(self) -> str:
        return self.address

    def ports(self) -> list[tuple[str, int]]:
        return [("PLAINTEXT", self.port), ("CONTROLLER", self.controller_port)]

    # ------------------------------------------------------------ jars
    def _pom_digest(self) -> str:
        return hashlib.sha256(POM.read_bytes()).hexdigest()

    def jars_present(self) -> bool:
        marker = self.libs_dir / ".complete"
        try:
            return marker.read_text().strip() == self._pom_digest()
        except OSError:
            return False

    def fetch_jars(self) -> None:
        """mvn dependency:copy-dependencies into libs/ (atomically; skipped when present)."""
        if self.jars_present():
            return
        mvn = shutil.which("mvn")
        if not mvn:
            raise StackError(self.name, "mvn (Apache Maven) not found: it fetches the Kafka jars on first use")
        self.dir.mkdir(parents=True, exist_ok=True)
        work = self.dir / "libs.fetch"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        # Run from a copy of the pom so mvn leaves nothing in the source tree.
        shutil.copy(POM, work / "pom.xml")
        run_checked(self.name, [mvn, "-q", "-B", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
                                f"-DoutputDirectory={work / 'libs'}"],
                    self.fetch_log, FETCH_TIMEOUT, "fetching the Kafka jars with mvn", cwd=work)
        jars = list((work / "libs").glob("kafka_2.13-*.jar"))
        if not jars:
            raise StackError(self.name, "mvn finished but no kafka_2.13 jar was copied", self.fetch_log)
        (work / "libs" / ".complete").write_text(self._pom_digest() + "\n")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        os.replace(work / "libs", self.libs_dir)
        shutil.rmtree(work, ignore_errors=True)

    # ------------------------------------------------------------ config and format
    def server_properties(self) -> str:
        h = self.host
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{h}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{h}:{self.port},CONTROLLER://{h}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{h}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # one broker: every internal topic at replication 1
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # fewer internal partitions than the defaults (50 each): every start and every
            # crash recovery loads them all, which dominated restart time on 2 cores.
            # Only read when the topics are created; never change for an existing state dir.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.num.partitions": "10",
            # framelog creates its topics explicitly (streams/), never by accident
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            # a crash (kill -9) loses nothing acknowledged with acks=all: one broker, and the
            # page cache outlives the process; the OS flushes. No unclean leader election.
            "unclean.leader.election.enable": "false",
            # after a kill -9 the restarted broker cannot register until the dead incarnation's
            # session expires (DuplicateBrokerRegistrationException): 6 s instead of the default 9 s,
            # still six missed heartbeats of slack for a loaded 2-core machine
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "6000",
        }
        return "# written by framelog stack up; edits are overwritten\n" + "".join(
            f"{k}={v}\n" for k, v in props.items())

    def is_formatted(self) -> bool:
        return (self.data_dir / "meta.properties").exists()

    def format_storage(self) -> None:
        if self.is_formatted():
            return
        cluster_id_path = self.dir / "cluster.id"
        cluster_id = cluster_id_path.read_text().strip() if cluster_id_path.exists() else new_cluster_id()
        cluster_id_path.write_text(cluster_id + "\n")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_checked(self.name, [java_binary(), "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                                "-cp", str(self.libs_dir / "*"), "kafka.tools.StorageTool", "format",
                                "--standalone", "-t", cluster_id, "-c", str(self.properties_path)],
                    self.log_path, self.startup_timeout, "formatting the KRaft storage", cwd=self.dir)

    def prepare(self) -> None:
        self.fetch_jars()
        self.properties_path.write_text(self.server_properties())
        self.format_storage()

    def command(self) -> list[str]:
        return [java_binary(), f"-Xmx{JVM_HEAP}", f"-Xms{JVM_HEAP}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={self.dir}",
                "-cp", str(self.libs_dir / "*"), "kafka.Kafka", str(self.properties_path)]

    # ------------------------------------------------------------ health
    def check_health(self) -> None:
        """The PLAINTEXT port accepts and the broker answers a metadata request listing itself."""
        if not port_open(self.host, self.port):
            raise ConnectionError(f"nothing listening on {self.address}")
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.address, "client.id": "framelog-stack-health",
                             "socket.connection.setup.timeout.ms": 2000, "log_level": 2})
        metadata = admin.list_topics(timeout=3)
        if not metadata.brokers:
            raise ConnectionError("metadata lists no brokers yet")
        if metadata.controller_id is None or metadata.controller_id < 0:
            raise ConnectionError("no active controller yet")

    def status(self) -> dict:
        info = super().status()
        info["data"] = str(self.data_dir)
        return info
