"""Fixtures of the integration tests (helpers they import: tests/integration/support/).

The whole pipeline (``worker``), the status view it folds (``status``) and the
bucket (``store``) for the pipeline tests; the tiering worker with time shrunk
to seconds (``tcfg``, ``tiering_worker``). Module scope: each module starts what
it uses and stops what it started. A module may define a fixture of the same
name for its own needs; pytest takes the module's.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from framelog.core.config import Config
from framelog.sinks.object_store import ObjectStore
from framelog.stack.services import WorkerService
from framelog.views.status import StatusTable
from tests.integration.support import running
from tests.integration.support.tiering_worker import TieringWorker, seconds_config, started_alone


@pytest.fixture(scope="module")
def worker(stack, config) -> Iterator[WorkerService]:
    """Every pipeline stage (``framelog worker``), started unless one runs already."""
    with running(WorkerService(config), timeout=300) as service:
        yield service


@pytest.fixture(scope="module")
def status(stack, config) -> Iterator[StatusTable]:
    """The status view (videos.status replayed), caught up."""
    table = StatusTable(config.streams, config.pipeline.stage_names).start()
    assert table.wait_ready(60)
    yield table
    table.stop()


@pytest.fixture(scope="module")
def store(stack, config) -> ObjectStore:
    return ObjectStore(config.object_storage, config.stack.state_dir)


@pytest.fixture(scope="module")
def tcfg(stack, tmp_path_factory) -> tuple[Config, Path]:
    """The configuration of this stack (its overlay, if any) with tiering time shrunk to seconds."""
    return seconds_config(tmp_path_factory.mktemp("tiering"))


@pytest.fixture(scope="module")
def tiering_worker(tcfg, tmp_path_factory) -> Iterator[TieringWorker]:
    """The tiering worker of this module, on the seconds configuration; stopped after the module."""
    cfg, overlay = tcfg
    w = started_alone(cfg, overlay, tmp_path_factory.mktemp("tiering-log") / "worker.log")
    yield w
    w.stop()
