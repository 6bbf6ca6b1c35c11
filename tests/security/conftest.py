"""Fixtures of the security tests (helpers they import: tests/security/support/)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.support.http_listener import recording_server


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """(base URL, paths requested so far) of a recording HTTP server; a test asserts the list stays empty."""
    with recording_server() as served:
        yield served
