"""Fixtures shared by every test: the configuration and the real local stack.

The layout (tests/unit/test_test_layout.py guards it): each tier (unit, media,
integration, security) has a conftest.py with its fixtures and a support/
package with its helpers. A test module takes fixtures by name and imports
helpers only from a support package (``from tests.<tier>.support... import``),
never from another test module or a conftest. Fixtures more than one tier uses
live here.

Integration tests (``@pytest.mark.integration``) take the session-scoped ``stack``
fixture: it brings the embedded stack up with the default configuration,
reusing one that already runs. A stack this session started is stopped at the
end (data kept); one that was already running is left running. Set
FRAMELOG_KEEP_STACK=1 to keep a stack this session started, for fast re-runs.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from framelog.core.config import Config, get_config


@pytest.fixture(scope="session")
def config() -> Config:
    return get_config()


@pytest.fixture(scope="session")
def stack(config: Config):
    from framelog.stack.manager import Stack

    s = Stack(config)
    was_running = s.is_running()
    s.up()
    yield s
    if not was_running and not os.environ.get("FRAMELOG_KEEP_STACK"):
        s.down()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory) -> Path:
    """The embedded ClickHouse engine's path for every test that opens chdb in this process.

    chdb runs one engine per process and refuses a second path while any session
    of the first is open, so tests share this one and keep apart by database.
    """
    return tmp_path_factory.mktemp("chdb").resolve()


@pytest.fixture(scope="module")
def secret(config: Config) -> bytes:
    """The stack's edge-signing secret (signed edge URLs, share tokens)."""
    from framelog.processors.tokens import load_or_create_secret

    return load_or_create_secret(config.security, config.stack.state_dir)


@pytest.fixture(scope="session", autouse=True)
def users_stack_untouched():
    """The suite changes nothing on the user's own stack (the default configuration's).

    scripts/test.sh runs the suite on a private stack; when the user's stack is up
    on this machine (after `scripts/demo.sh`, say), every object of its bucket must
    be byte- and tier-identical at the end (key, ETag, size, storage class).
    """
    from framelog.stack.private_stack import users_objects

    before = users_objects()
    yield
    if before is not None:
        after = users_objects()
        assert after == before, "the test suite changed objects of the user's own stack"
