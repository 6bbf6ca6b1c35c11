"""tus interoperability: the real tuspy (PyPI) and tus-js-client (npm, under node) against the upload API.

Each upload ends with exactly one UploadCompleted whose sha256 is the file's.
Covered: chunks smaller than an S3 part with tuspy's sha1 checksums, a resume
after an interruption (tuspy stopping, tus-js-client aborting mid-request), and
tus-js-client's default of one PATCH for the whole file with a file over the
old 256 MiB cap, while the API's memory is sampled: it streams, it does not
buffer the body.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from tusclient import client as tus_client

from framelog.core.config import Config
from framelog.processors.identity import Keyring, mint_token
from framelog.sinks.object_store import ObjectStore
from framelog.sinks.upload_sessions import partial_prefix
from tests.integration.support.upload_api import LiveApi, upload_records

pytestmark = pytest.mark.integration

MIB = 2**20
REPO = Path(__file__).resolve().parents[2]
NODE_SCRIPT = Path(__file__).parent / "support" / "tus_js_upload.mjs"


def token(config: Config, sub: str) -> str:
    return mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), sub, scopes=("videos:write",))


def random_file(path: Path, size: int) -> str:
    """``size`` bytes of pseudo-random data (a cheap generator, not os.urandom: 300 MiB in a second)."""
    import hashlib
    import random

    rng = random.Random(size)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(left, 4 * MIB))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def video_id_of(url: str) -> str:
    return url.rstrip("/").split("/")[-2]


def one_upload_completed(config: Config, video_id: str, sha256: str, size: int) -> None:
    [event] = upload_records(config, video_id)
    assert event["sha256"] == sha256 and event["size_bytes"] == size
    assert list(ObjectStore(config.object_storage, config.stack.state_dir).keys(partial_prefix(video_id))) == []


# ------------------------------------------------------------------ tuspy

def test_tuspy_small_checksummed_chunks_and_a_resume(stack, config, tmp_path):
    src = tmp_path / "tuspy.mp4"
    size = 13 * MIB + 77
    expected = random_file(src, size)
    owner = token(config, "it-tuspy")
    with LiveApi(config) as api:
        client = tus_client.TusClient(f"{api.url}/videos", headers={"Authorization": f"Bearer {owner}"})
        first = client.uploader(str(src), chunk_size=3 * MIB + 1, upload_checksum=True,
                                metadata={"filename": src.name, "filetype": "video/mp4"})
        first.upload(stop_at=11 * MIB)              # interrupted: 4 requests, one 8 MiB part + a 3 MiB partial
        assert first.offset == 11 * MIB
        url = first.url
        # a new client (another process, say) resumes from the URL: it asks HEAD for the offset
        again = tus_client.TusClient(f"{api.url}/videos", headers={"Authorization": f"Bearer {owner}"})
        second = again.uploader(str(src), url=url, chunk_size=3 * MIB + 1, upload_checksum=True)
        assert second.offset == first.offset
        second.upload()
        assert second.offset == size
    one_upload_completed(config, video_id_of(url), expected, size)


def test_tuspy_whole_file_in_one_request(stack, config, tmp_path):
    src = tmp_path / "whole.mp4"
    size = 21 * MIB + 5
    expected = random_file(src, size)
    with LiveApi(config) as api:
        client = tus_client.TusClient(f"{api.url}/videos",
                                      headers={"Authorization": f"Bearer {token(config, 'it-tuspy')}"})
        uploader = client.uploader(str(src), metadata={"filename": src.name})      # default chunk: the file
        uploader.upload()
        url = uploader.url
    one_upload_completed(config, video_id_of(url), expected, size)


# ------------------------------------------------------------------ tus-js-client (node)

def node_upload(**opts: Any) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "tus-js-client").is_dir():
        pytest.fail("node and tus-js-client are needed (scripts/bootstrap.sh installs them with npm ci)")
    run = subprocess.run([node, str(NODE_SCRIPT), json.dumps(opts)], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0, (run.stdout, run.stderr)
    return events


class RssPeak:
    """The peak resident memory of this process (where LiveApi's uvicorn runs) while a block runs."""

    def __init__(self) -> None:
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


def test_tus_js_client_one_request_over_256_mib_streams(stack, config, tmp_path):
    src = tmp_path / "big.mp4"
    size = 300 * MIB + 12345                                   # over the old per-request cap
    expected = random_file(src, size)
    with LiveApi(config) as api, RssPeak() as memory:
        events = node_upload(endpoint=f"{api.url}/videos", file=str(src), token=token(config, "it-tusjs"))
    assert events[-1]["event"] == "success", events
    print(f"tus-js-client, one PATCH of {size} bytes: API process RSS grew {memory.growth / MIB:.1f} MiB")
    assert memory.growth < 96 * MIB, f"the API buffered the body: RSS grew {memory.growth / MIB:.0f} MiB"
    one_upload_completed(config, video_id_of(events[-1]["url"]), expected, size)


def test_tus_js_client_resumes_after_an_abort_mid_request(stack, config, tmp_path):
    src = tmp_path / "resume.mp4"
    size = 40 * MIB + 3
    expected = random_file(src, size)
    owner = token(config, "it-tusjs")
    with LiveApi(config) as api:
        first = node_upload(endpoint=f"{api.url}/videos", file=str(src), token=owner, abortAt=19 * MIB)
        assert first[-1]["event"] == "aborted", first
        url = first[-1]["url"]
        head = ObjectStore(config.object_storage, config.stack.state_dir)
        held = sum(1 for _ in head.keys(partial_prefix(video_id_of(url))))
        second = node_upload(endpoint=f"{api.url}/videos", file=str(src), token=owner, uploadUrl=url)
    heads = [e["offset"] for e in second if e["event"] == "head"]
    assert heads and 0 < heads[0] < size, second              # resumed from what the server held, not from 0
    assert second[-1]["event"] == "success" and second[-1]["url"] == url, second
    print(f"tus-js-client aborted after >= 19 MiB; the server held {heads[0]} bytes ({held} partial object)")
    one_upload_completed(config, video_id_of(url), expected, size)
