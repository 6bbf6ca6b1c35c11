"""The embedded Kafka cluster: Apache Kafka 4.3 in KRaft mode, one or more combined broker+controller nodes.

One node (the default, the demo's) is a standalone quorum. With ``kafka.brokers`` (or ``framelog stack
up --brokers N``) above one, each node is its own process with its own node id, ports
(core/kafka_nodes.py), data dir (``<state>/kafka-<i>``; node 1 keeps ``<state>/kafka``) and a static
voter set of all nodes; the jars, the cluster id and the credentials are shared. Internal topics
get the replication of core/kafka_nodes.replication (3 nodes: RF 3, min ISR 2).

First use fetches the jars from Maven Central with ``mvn dependency:copy-dependencies``
(the pom next to this file) into ``<state>/kafka/libs``; later starts skip the
fetch while the jars match the pom. The data directory is formatted once
(``kafka.tools.StorageTool format --standalone``) and never again while
``meta.properties`` exists, so data survives ``down``/``up``.

Nobody gets in without credentials (the listeners only bind the stack's host, but anyone on
that host could otherwise read and write every topic):

* the client listener (``stack.kafka_port``, the advertised one) speaks SASL with SCRAM
  (``kafka.security.mechanism``); every principal's password is generated into
  ``<state>/credentials/kafka.json`` (core/service_credentials.py) and its SCRAM credentials are
  written at format time (``--add-scram``), or for a state dir formatted before credentials
  existed by one start of the broker in its old, open configuration (``_migrate_to_scram``).
  ``after_healthy`` adds the credentials of principals that appeared since (a new stage) and
  applies the ACLs (streams/acls.py). It is also the inter-broker listener, as ``broker``.
* the controller listener speaks SASL/PLAIN with one static user (``controller``) whose
  password lives only in ``server.properties`` (0600): KRaft cannot use SCRAM there (the
  credentials live in the metadata the controller serves), and a PLAINTEXT controller port
  would have to make ANONYMOUS a super user, letting anyone on the host forward admin
  requests (Envelope) or fetch the metadata log through it.
* StandardAuthorizer with ``allow.everyone.if.no.acl.found=false``; super users are only
  ``admin`` (the stack, ``framelog topics create``, operators, tests' probes), ``broker``
  and ``controller``.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from framelog.core.kafka_nodes import node_ports, record_brokers, replication
from framelog.core.service_credentials import ensure_kafka_passwords
from framelog.stack.process import Component, StackError, pid_alive, port_open, run_checked, wait_until
from framelog.streams.acls import SCRAM_ITERATIONS, SCRAM_MECHANISMS, upsert_scram_users
from framelog.streams.kafka_auth import ADMIN, BROKER, CONTROLLER, principals

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"
JVM_HEAP = "512m"
FETCH_TIMEOUT = 900.0  # a cold ~/.m2 downloads ~45 MB; generous on purpose
SCRAM_MARKER = "scram.ready"   # in the kafka dir: this data dir's metadata holds the SCRAM users
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# a node left running after a majority of the voters stopped: time for a broker whose controlled
# shutdown was approved just before to finish flushing, before it is killed (finish_cluster_stop)
QUORUM_LOST_GRACE = 15.0


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


def node_name(node_id: int) -> str:
    """Node 1 is ``kafka`` (the single-node layout of every existing state dir), the others ``kafka-<i>``."""
    return "kafka" if node_id == 1 else f"kafka-{node_id}"


class Kafka(Component):
    name = "kafka"

    def __init__(self, config, node_id: int = 1, brokers: int = 1):
        self.name = node_name(node_id)
        super().__init__(config)
        self.node_id = node_id
        self.brokers = brokers
        self.port, self.controller_port = node_ports(config.stack, node_id)
        self.first_dir = self.state_dir / node_name(1)     # shared: jars, cluster id
        self.libs_dir = self.first_dir / "libs"
        self.data_dir = self.dir / "data"
        self.properties_path = self.dir / "server.properties"
        self.open_properties_path = self.dir / "server.open.properties"   # only while migrating to SCRAM
        self.scram_marker = self.dir / SCRAM_MARKER
        self.fetch_log = self.dir / "mvn.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def marker(self) -> str:
        """Exact: node 1's dir is a prefix of node 2's, and every node's command names node 1's jars."""
        return f"-Dkafka.logs.dir={self.dir} "

    @property
    def bootstrap_servers(self) -> str:
        return self.address

    def ports(self) -> list[tuple[str, int]]:
        return [("CLIENT", self.port), ("CONTROLLER", self.controller_port)]

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
    def passwords(self) -> dict[str, str]:
        """Every principal's password (generated once per state dir; new principals added)."""
        return ensure_kafka_passwords(self.config.stack.state_dir, [*principals(self.config.pipeline), CONTROLLER])

    def security_properties(self, passwords: dict[str, str]) -> dict[str, str]:
        """SASL on both listeners, the authorizer and the super users (see the module's docstring)."""
        mechanism = self.config.kafka.sasl_mechanism
        controller_password = passwords[CONTROLLER]
        return {
            "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "CLIENT",
            "sasl.mechanism.inter.broker.protocol": mechanism,
            "listener.name.client.sasl.enabled.mechanisms": mechanism,
            f"listener.name.client.{mechanism.lower()}.sasl.jaas.config":
                f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                f'username="{BROKER}" password="{passwords[BROKER]}";',
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config":
                f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{CONTROLLER}" '
                f'password="{controller_password}" user_{CONTROLLER}="{controller_password}";',
            "authorizer.class.name": AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join(f"User:{u}" for u in (ADMIN, BROKER, CONTROLLER)),
        }

    def server_properties(self, passwords: dict[str, str] | None = None) -> str:
        """The broker's configuration: secured with ``passwords``; open (the pre-SASL layout) without."""
        h = self.host
        listener = "CLIENT" if passwords is not None else "PLAINTEXT"
        rf, min_isr = replication(self.config.kafka, self.brokers)
        quorum = ({"controller.quorum.bootstrap.servers": f"{h}:{self.controller_port}"} if self.brokers == 1 else
                  {"controller.quorum.voters": ",".join(f"{i}@{h}:{node_ports(self.config.stack, i)[1]}"
                                                        for i in range(1, self.brokers + 1))})
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **quorum,
            "listeners": f"{listener}://{h}:{self.port},CONTROLLER://{h}:{self.controller_port}",
            "advertised.listeners": f"{listener}://{h}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            **(self.security_properties(passwords) if passwords is not None else {}),
            "log.dirs": str(self.data_dir),
            # every internal topic as replicated as framelog's own (one node: 1/1; three: 3/2)
            "offsets.topic.replication.factor": str(rf),
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(min_isr),
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "default.replication.factor": str(rf),
            "min.insync.replicas": str(min_isr),
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
            # a crash (kill -9) loses nothing acknowledged with acks=all: the page cache outlives the
            # process (the OS flushes), and with three nodes acks=all waits for min ISR replicas.
            # No unclean leader election: an out-of-sync replica never becomes leader.
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

    def format_storage(self, passwords: dict[str, str]) -> None:
        """Format once, with every principal's SCRAM credentials in the bootstrap metadata."""
        if self.is_formatted():
            return
        cluster_id_path = self.first_dir / "cluster.id"      # one cluster id for every node
        cluster_id = cluster_id_path.read_text().strip() if cluster_id_path.exists() else new_cluster_id()
        cluster_id_path.parent.mkdir(parents=True, exist_ok=True)
        cluster_id_path.write_text(cluster_id + "\n")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        quorum = ["--standalone"] if self.brokers == 1 else []   # several nodes: the static voters in the properties
        run_checked(self.name, [java_binary(), "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                                "-cp", str(self.libs_dir / "*"), "kafka.tools.StorageTool", "format",
                                *quorum, "-t", cluster_id, "-c", str(self.properties_path),
                                *self._add_scram_args(passwords)],
                    self.log_path, self.startup_timeout, "formatting the KRaft storage", cwd=self.dir)
        self.scram_marker.write_text("formatted with SCRAM users\n")
        if self.node_id == 1:
            record_brokers(self.state_dir, self.brokers)

    def _add_scram_args(self, passwords: dict[str, str]) -> list[str]:
        args = []
        for user in principals(self.config.pipeline):
            for mechanism in SCRAM_MECHANISMS:
                args += ["--add-scram", f"{mechanism}=[name={user},password={passwords[user]},"
                                        f"iterations={SCRAM_ITERATIONS}]"]
        return args

    def _write_properties(self, path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # it holds the broker's passwords
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    def prepare(self) -> None:
        if self.node_id == 1:
            self.fetch_jars()
        elif not self.jars_present():
            raise StackError(self.name, f"the Kafka jars are not in {self.libs_dir} (node 1 fetches them first)")
        passwords = self.passwords()
        self._write_properties(self.properties_path, self.server_properties(passwords))
        if not self.is_formatted():
            self.format_storage(passwords)
        elif not self.scram_marker.exists():
            self._migrate_to_scram(passwords)

    def _migrate_to_scram(self, passwords: dict[str, str]) -> None:
        """A data dir formatted before SASL: start it once open, as before, add the SCRAM users, stop it.

        Only the SCRAM credentials are written during that window (the broker was open until
        now anyway); the caller then starts it secured.
        """
        import subprocess

        from confluent_kafka.admin import AdminClient

        self._write_properties(self.open_properties_path, self.server_properties())
        argv = self.command(self.open_properties_path)
        with open(self.log_path, "ab") as log:
            log.write(b"\n=== framelog stack: starting kafka once open to add SCRAM users (upgrade)\n")
            log.flush()
            proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        try:
            admin = AdminClient({"bootstrap.servers": self.address, "client.id": "framelog-stack-upgrade",
                                 "log_level": 2})

            def ready() -> bool:
                if proc.poll() is not None:
                    raise StackError(self.name, "the broker exited while adding SCRAM users", self.log_path)
                try:
                    md = admin.list_topics(timeout=3)
                    return bool(md.brokers) and md.controller_id is not None and md.controller_id >= 0
                except Exception:    # noqa: BLE001 - not up yet
                    return False

            if not wait_until(ready, self.startup_timeout):
                raise StackError(self.name, "the broker did not come up to add SCRAM users", self.log_path)
            upsert_scram_users(admin, principals(self.config.pipeline), passwords, timeout=30)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.open_properties_path.unlink(missing_ok=True)
        self.scram_marker.write_text("SCRAM users added to a data dir formatted without them\n")

    def launch(self) -> bool:
        """As Component.launch; a broker still running its pre-SASL configuration is restarted first."""
        if self.is_running() and "authorizer.class.name" not in self._current_properties():
            self.stop()
        return super().launch()

    def _current_properties(self) -> str:
        try:
            return self.properties_path.read_text()
        except OSError:
            return ""

    def admin_settings(self) -> dict:
        """The stack's own admin client on the client listener (the admin principal, from the state dir)."""
        return {"bootstrap.servers": self.address, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": self.config.kafka.sasl_mechanism, "sasl.username": ADMIN,
                "sasl.password": self.passwords()[ADMIN]}

    def after_healthy(self) -> None:
        """SCRAM users of principals added since the format (a new stage), then the ACLs (node 1 does it)."""
        if self.node_id != 1:
            return
        from confluent_kafka.admin import AdminClient

        from framelog.streams.acls import apply_acls

        admin = AdminClient({**self.admin_settings(), "client.id": "framelog-stack-setup", "log_level": 2})
        upsert_scram_users(admin, principals(self.config.pipeline), self.passwords(), timeout=30, only_missing=True)
        apply_acls(self.config.streams, admin=admin)

    def command(self, properties: Path | None = None) -> list[str]:
        return [java_binary(), f"-Xmx{JVM_HEAP}", f"-Xms{JVM_HEAP}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={self.dir}",
                "-cp", str(self.libs_dir / "*"), "kafka.Kafka", str(properties or self.properties_path)]

    # ------------------------------------------------------------ health
    def check_health(self) -> None:
        """The client port accepts and the node answers the admin's metadata request listing itself."""
        if not port_open(self.host, self.port):
            raise ConnectionError(f"nothing listening on {self.address}")
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({**self.admin_settings(), "client.id": "framelog-stack-health",
                             "socket.connection.setup.timeout.ms": 2000, "log_level": 2})
        metadata = admin.list_topics(timeout=3)
        if self.node_id not in metadata.brokers:
            raise ConnectionError(f"metadata does not list broker {self.node_id} yet")
        if metadata.controller_id is None or metadata.controller_id < 0:
            raise ConnectionError("no active controller yet")

    def status(self) -> dict:
        info = super().status()
        info["data"] = str(self.data_dir)
        info["node_id"] = self.node_id
        return info


def finish_cluster_stop(nodes: list[Kafka], pids: dict[str, int | None], timeout: float) -> dict[str, str]:
    """Wait for the nodes SIGTERMed together (``pids`` by node name); {node name: what happened}.

    A combined node's broker stops only after the controller quorum approves its controlled
    shutdown (Kafka itself waits 5 minutes for that). When a whole cluster stops, a node not yet
    approved when a majority of the voters has exited can never be: it gets QUORUM_LOST_GRACE
    (an approved broker still flushing) and then SIGKILL. Nothing is lost: its data is in the page
    cache and on disk, and its next start recovers the log as after any crash; every other node
    stopped cleanly. One node is its own quorum and only ever gets ``timeout``.
    """
    running = {n.name: pid for n in nodes if (pid := pids.get(n.name)) is not None}
    quorum = len(nodes) // 2 + 1

    def alive() -> list[str]:
        return [name for name, pid in running.items() if pid_alive(pid)]

    if wait_until(lambda: len(alive()) < quorum, timeout):
        wait_until(lambda: not alive(), QUORUM_LOST_GRACE)
    left = alive()
    outcome = {}
    for n in nodes:
        pid = running.get(n.name)
        if pid is None:
            outcome[n.name] = "not running"
        elif n.name not in left:
            outcome[n.name] = n._finish_stop(pid, 0)
        elif len(left) < quorum:
            outcome[n.name] = n.force_stop(pid, "its controlled shutdown needed a controller quorum and the other "
                                                "nodes had stopped; its log is recovered at the next start")
        else:
            outcome[n.name] = n.force_stop(pid, f"did not stop within {timeout:.0f}s of SIGTERM")
    return outcome
