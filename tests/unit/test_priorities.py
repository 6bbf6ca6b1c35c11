"""Processing priorities: config, topics per level, and the gate that hands out a stage's slots."""
from __future__ import annotations

import asyncio
import copy

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config, get_config
from framelog.core.errors import ConfigError
from framelog.pipeline.agents.priority_gate import PriorityGate
from framelog.streams import topics


@pytest.fixture
def raw():
    return copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))


def test_resolve_request_then_workspace_then_default(raw):
    raw["processing_priorities"]["workspaces"] = {"newsroom": "high"}
    p = build_config(raw).priorities
    assert p.resolve(None) == p.resolve("") == "normal"
    assert p.resolve(None, "newsroom") == "high" and p.resolve("low", "newsroom") == "low"
    assert [p.rank(x) for x in ("high", "normal", "low", "", "bogus")] == [0, 1, 2, 1, 1]
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        p.resolve("urgent")


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d.__setitem__("default", "urgent"), "processing_priorities.default"),
    (lambda d: d.__setitem__("levels", ["high", "dlq"]), "processing_priorities.levels[1]"),
    (lambda d: d.__setitem__("levels", ["high", "high", "normal"]), "processing_priorities.levels"),
    (lambda d: d.__setitem__("workspaces", {"ops": "asap"}), "processing_priorities.workspaces.ops"),
])
def test_bad_priority_settings_are_named(raw, mutate, key):
    mutate(raw["processing_priorities"])
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    assert err.value.key == key


def test_each_stage_has_one_request_topic_per_level_the_default_keeps_the_plain_one():
    config = get_config()
    assert topics.stage_topics(config.priorities, "transcoding") == [
        ("high", "pipeline.transcoding.high"), ("normal", "pipeline.transcoding"), ("low", "pipeline.transcoding.low")]
    assert topics.stage_topic(config.priorities, "transcoding", "") == "pipeline.transcoding"
    names = {t.name for t in topics.all_topics(config.topics)}
    assert {"pipeline.validation.high", "pipeline.validation.low", "pipeline.validation.high.dlq"} <= names


def test_a_freed_slot_goes_to_the_highest_priority_waiter_then_the_first_come():
    async def scenario() -> list[str]:
        gate, order = PriorityGate(1), []
        release = asyncio.Event()

        async def job(name: str, rank: int, hold: asyncio.Event | None = None) -> None:
            async with gate.slot(rank):
                order.append(name)
                if hold is not None:
                    await hold.wait()

        first = asyncio.create_task(job("low-1", 2, release))       # takes the only slot
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(job(n, r)) for n, r in
                   (("low-2", 2), ("normal-1", 1), ("low-3", 2), ("high-1", 0), ("normal-2", 1))]
        await asyncio.sleep(0)
        assert gate.waiting == 5
        release.set()
        await asyncio.gather(first, *waiting)
        return order

    assert asyncio.run(scenario()) == ["low-1", "high-1", "normal-1", "normal-2", "low-2", "low-3"]


def test_a_cancelled_waiter_does_not_keep_a_slot():
    async def scenario() -> int:
        gate = PriorityGate(1)
        async with gate.slot(1):
            waiter = asyncio.create_task(gate.slot(0).__aenter__())
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        async with gate.slot(2):                                  # the slot came back
            return gate.waiting

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == 0
