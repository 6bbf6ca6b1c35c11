"""framelog-client installed alone (issue 15 pt 6): a fresh virtualenv gets ./client and nothing of the back
end, and the README's ten-line example runs in it against the real stack (API and pipeline): the upload
goes through, the live status reaches ready, the like it sends lands in the analytics."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from framelog.processors.identity import EVENTS_WRITE, VIDEOS_WRITE, Keyring, mint_token
from framelog.stack.services import ApiService
from tests.integration.support import wait_for
from tests.media.support import clips

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"<!-- client-example -->\s*```python\n(.*?)```\s*<!-- /client-example -->", re.S)
BACK_END = {"framelog", "chdb-core", "confluent-kafka", "faust-streaming", "boto3", "fastapi", "pocketsphinx"}
PIPELINE_DEADLINE = 420.0


@pytest.fixture(scope="module")
def api(stack, config) -> str:
    service = ApiService(config)
    was_running = service.is_running()
    service.start(timeout=120)
    yield service.address
    if not was_running:
        service.stop()


def oldest_python() -> str:
    """The oldest Python the client supports (3.9) if this machine has one (on PATH or under pyenv), else ours."""
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    candidates = [shutil.which("python3.9"), *pyenv]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"],
                          capture_output=True).returncode == 0:
            return candidate
    return sys.executable


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtualenv, on Python 3.9 where the machine has it, with framelog-client installed from ./client
    (not editable), and nothing else."""
    base = tmp_path_factory.mktemp("client-venv")
    where, source = base / "venv", base / "client"
    shutil.copytree(ROOT / "client", source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    subprocess.run([oldest_python(), "-m", "venv", str(where)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(where / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                           str(source)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return where


def test_installed_alone_it_brings_only_httpx(venv):
    out = subprocess.run([str(venv / "bin" / "pip"), "list", "--format", "json", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True).stdout
    names = {p["name"].lower() for p in json.loads(out)}
    assert {"framelog-client", "httpx"} <= names
    assert not names & BACK_END, names & BACK_END
    assert len(names - {"pip", "setuptools", "wheel"}) <= 10, names     # httpx and its few dependencies


def test_the_readme_example_runs_against_the_stack(api, worker, config, venv, tmp_path):
    code = EXAMPLE.search((ROOT / "README.md").read_text()).group(1)
    assert len(code.strip().splitlines()) <= 10, "the README promises a ten-line example"
    script = tmp_path / "example.py"
    script.write_text(code)
    clip = clips.video(tmp_path / "clip.mp4", duration=3)
    owner = f"client-example-{os.getpid()}"
    token = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir),
                       owner, scopes=[VIDEOS_WRITE, EVENTS_WRITE])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(FRAMELOG_API=api, FRAMELOG_TOKEN=token)
    version = subprocess.run([str(venv / "bin" / "python"), "--version"], capture_output=True, text=True).stdout
    print(f"\nthe README's example on {version.strip()}")
    proc = subprocess.run([str(venv / "bin" / "python"), str(script), str(clip)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=PIPELINE_DEADLINE + 60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    transitions = [line.split() for line in lines if line.startswith("transition ")]
    assert {t[1] for t in transitions} >= {"validation", "transcoding", "cdn_upload"}, lines
    assert lines[-2].split() == ["end", "ready"], lines
    video_id, views, likes = lines[-1].split()
    assert int(views) >= 0 and int(likes) in (0, 1)        # the sink may not have written the like yet
    owner_headers = {"Authorization": f"Bearer {token}"}

    def likes_now() -> int:
        return httpx.get(f"{api}/v1/videos/{video_id}/analytics", headers=owner_headers, timeout=10).json()["likes"]

    wait_for(lambda: likes_now() == 1, "the example's like in the analytics", 90, step=0.5)
    assert httpx.get(f"{api}/videos/{video_id}", headers=owner_headers, timeout=10).json()["state"] == "ready"
