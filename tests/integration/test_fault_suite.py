"""The fault suite, CI-sized (issue 14 pt 2): load on, kill -9 of the broker, a worker group, the API, the
analytics sink (a process of its own, owning the embedded engine), SeaweedFS and an edge (alone, then two
together: the sink with the broker first), and the verdicts hold, "every CDN command applied" among them.

The full run is ``framelog faults run --seconds 300 --out bench/results`` (README, operations); this one
is shorter, with fewer targets, so it fits the test command. It stops what it started.
"""
from __future__ import annotations

import pytest

from framelog.ops.faults.run import FaultRunSettings, run_faults
from framelog.stack.services import ApiService, SinkService, WorkerService
from tests.integration.support import running

pytestmark = pytest.mark.integration

TARGETS = ("broker", "worker:transcoding", "api", "sink", "s3", "edge")


@pytest.mark.timeout(1800)       # load 150 s, restarts, then settling: well over the default per-test limit
def test_nothing_acknowledged_is_lost_or_counted_twice_while_processes_are_killed(stack, config, tmp_path):
    api = ApiService(config, embedded_sink=False)       # the sink runs as its own process, owning the engine
    if api.is_running():
        api.stop()                                      # one from an earlier test may host the sink
    with running(WorkerService(config), timeout=300), running(SinkService(config), timeout=120), \
            running(api, timeout=120):
        run = run_faults(config, FaultRunSettings(duration=180.0, targets=TARGETS, pairs=2, upload_interval=30.0,
                                                  restart_timeout=300.0, out=tmp_path,
                                                  command="pytest tests/integration/test_fault_suite.py"))
    failed = [f"{v.name}: {v.detail}" for v in run.verdicts if not v.ok]
    assert not failed, "\n".join(failed) + f"\nreport: {run.report}"
    assert {o.target for o in run.outages} == set(TARGETS)
    assert len(run.outages) == len(TARGETS) + 4          # every target alone, then two pairs
    assert [o.target for o in run.outages[len(TARGETS):len(TARGETS) + 2]] == ["sink", "broker"]
    cdn = next(v for v in run.verdicts if v.name == "every CDN command applied")
    assert cdn.figures["commands"] > 0 and not cdn.figures["missing"]
    assert (tmp_path / "faults.svg").read_text().startswith("<svg")
