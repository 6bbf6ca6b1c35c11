"""A record whose handling meets an outage of the log or the store is handled again, not skipped."""
from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import EndpointConnectionError

from framelog.core.backoff import Backoff
from framelog.pipeline.agents.pipeline import until_handled
from framelog.streams.exceptions import DeliveryError

NO_WAIT = Backoff(0.0, 0.0)


def test_the_same_record_is_handled_again_until_the_log_and_the_store_take_it():
    calls = []

    async def handle() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise DeliveryError("timeout", "1 of 1 StageTransition(s) not acknowledged within 30s")
        if len(calls) == 2:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    assert asyncio.run(until_handled("test", handle, NO_WAIT)) == 2
    assert calls == [0, 1, 2]


def test_a_bug_is_not_an_outage_and_is_not_retried():
    calls = []

    async def handle() -> None:
        calls.append(1)
        raise KeyError("inputs")

    with pytest.raises(KeyError):
        asyncio.run(until_handled("test", handle, NO_WAIT))
    assert calls == [1]
