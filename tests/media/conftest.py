"""Fixtures of the media tests: clips made on demand, once per session (helpers: tests/media/support/)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from framelog.core.config import load_config
from tests.media.support import PRESET, clips

if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:  # pragma: no cover
    pytest.skip("ffmpeg/ffprobe not installed", allow_module_level=True)


@pytest.fixture(scope="session")
def cfg():
    return load_config()


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """clip("landscape.mp4") -> path, generated on first use (names from clips.ALL)."""
    directory = tmp_path_factory.mktemp("clips")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = clips.ALL[name](directory / name)
        return made[name]
    return get


@pytest.fixture(scope="session")
def landscape_hls(clip, cfg, tmp_path_factory):
    """The 1280x720 12 s clip packaged once: 720p, 480p, 360p, AES-128, with progress recorded."""
    from framelog.processors.media.hls import package_hls

    out = tmp_path_factory.mktemp("hls") / "vid-landscape"
    seen: list[float] = []
    result = package_hls(clip("landscape.mp4"), out, "vid-landscape", cfg.hls, preset=PRESET, progress=seen.append)
    return result, seen


@pytest.fixture
def key_file(tmp_path):
    def write(key: bytes) -> Path:
        p = tmp_path / "hls.key"
        p.write_bytes(key)
        return p
    return write
