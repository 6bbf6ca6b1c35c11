"""Fixtures of the unit tests (helpers they import: tests/unit/support/).

Unit tests need no stack. ``cfg`` is the packaged default configuration as it
ships (no overlay), for tests of the decisions it drives; ``config`` (tests/conftest.py)
is this machine's, overlay included.
"""
from __future__ import annotations

import pytest

from framelog.core.config import DEFAULT_CONFIG_PATH, Config, load_config


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(DEFAULT_CONFIG_PATH)
