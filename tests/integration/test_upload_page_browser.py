"""The creator upload page (GET /upload: Uppy Dashboard + @uppy/tus, bundled from npm) in Debian's chromium.

A person opens the page with a token, chooses a large video (a lossless noise
clip of about 100 MiB, so a few seconds of video make many S3 parts), starts
the upload on a throttled network, pauses it part way, checks nothing more
arrives, resumes on a fast network, and watches the page show the video
processing. The API is the real ``framelog api`` process and the pipeline the
real worker. The server must have kept what arrived before the pause (HEAD),
the client must resume from there (no PATCH at offset 0 after the pause), and
exactly one UploadCompleted with the file's sha256 must follow.
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import httpx
import pytest

from framelog.demo.browser import Browser, missing_requirements
from framelog.processors.identity import Keyring, mint_token
from framelog.stack.services import ApiService
from tests.integration.support import wait_for
from tests.integration.support.upload_api import upload_records

pytestmark = pytest.mark.integration

MIB = 2**20
UPLOAD_DEADLINE = 300.0
PROCESSING_DEADLINE = 300.0
THROTTLED_BPS = 48_000_000          # 6 MB/s while the upload is to be paused


@pytest.fixture(scope="module", autouse=True)
def browser_available():
    why = missing_requirements()
    if why:
        pytest.fail(f"browser tests cannot run: {why}")


@pytest.fixture(scope="module")
def api(stack, config) -> str:
    service = ApiService(config)
    was_running = service.is_running()
    service.start(timeout=120)
    yield service.address
    if not was_running:
        service.stop()


def large_clip(path: Path, seconds: int = 12) -> Path:
    """A valid H.264/AAC MP4 that is large for its length: random luma, lossless (~9 MB per second)."""
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
                    "-f", "lavfi", "-i", "nullsrc=s=640x360:r=25,geq=lum='random(1)*255':cb=128:cr=128",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


FILE = "framelogUpload.uppy.getFiles()[0]"


def test_upload_page_large_file_pause_resume_then_processing(api, worker, config, tmp_path):
    """``worker``: the whole pipeline (tests/integration/conftest.py)."""
    clip = large_clip(tmp_path / "creator-clip.mp4")
    size = clip.stat().st_size
    assert size > 64 * MIB
    token = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir),
                       "page-creator", scopes=["videos:write"])
    owner = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}

    with Browser() as browser:
        browser.goto(f"{api}/upload#token={token}")
        browser.wait("window.framelogUpload && document.querySelector('.uppy-Dashboard-input')", 30)
        assert browser.eval("location.hash") == ""                      # the token left the address bar
        browser.throttle(upload_bps=THROTTLED_BPS)
        browser.choose_files(".uppy-Dashboard-input", [clip])
        browser.wait(f"{FILE} && {FILE}.size === {size}", 30)
        browser.eval("document.querySelector('.uppy-StatusBar-actionBtn--upload').click()")
        browser.wait(f"{FILE}.progress.bytesUploaded > {size // 4}", UPLOAD_DEADLINE)

        browser.eval("document.querySelector('button[aria-label=\"Pause upload\"]').click()")
        browser.wait(f"{FILE}.isPaused === true", 10)
        url = browser.wait(f"{FILE}.tus && {FILE}.tus.uploadUrl", 10)
        upload_url = httpx.URL(api).join(url)
        video_id = upload_url.path.split("/")[2]

        def held() -> int:
            r = httpx.head(upload_url, headers=owner, timeout=30)
            assert r.status_code == 200, r.status_code
            return int(r.headers["Upload-Offset"])

        paused_at = wait_for(lambda: (lambda a, b: a == b and a)(held(), held()),
                             "the server's offset to settle after the pause", 30, step=0.5)
        assert 0 < paused_at < size, paused_at
        requests_before = browser.eval("framelogUpload.state.requests.length")

        browser.throttle()                                               # a fast network again
        browser.eval("document.querySelector('button[aria-label=\"Resume upload\"]').click()")
        browser.wait(f"{FILE}.progress.uploadComplete === true", UPLOAD_DEADLINE)
        shown = browser.wait(f"(framelogUpload.state.videos['{video_id}'] || {{}}).state", 30)
        assert shown in ("uploaded", "uploading", "processing", "ready"), shown
        final = browser.wait(f"['processing', 'ready', 'failed'].includes((framelogUpload.state.videos['{video_id}']"
                             " || {}).state) && framelogUpload.state.videos['" + video_id + "']", PROCESSING_DEADLINE)
        browser.screenshot(tmp_path / "upload-page.png")
        requests = browser.eval("framelogUpload.state.requests")
        errors = browser.eval("framelogUpload.state.errors")

    assert final["state"] in ("processing", "ready"), final
    assert errors == []
    after = requests[requests_before:]
    patches = [r for r in after if r["method"] == "PATCH"]
    assert patches and all(int(r["offset"]) >= paused_at for r in patches), after      # resumed, not restarted
    assert patches[-1]["status"] == 204 and int(patches[-1]["serverOffset"]) == size
    [event] = upload_records(config, video_id)
    assert event["sha256"] == sha256_of(clip) and event["size_bytes"] == size
    assert event["owner_id"] == "page-creator" and event["original_filename"] == clip.name
    print(f"upload page: {size} bytes, paused at {paused_at}, resumed with {len(patches)} PATCH(es); "
          f"the page showed {final['state']} ({final.get('stage')})")
