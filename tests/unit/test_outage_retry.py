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


def test_a_dead_letter_meeting_an_outage_is_sent_again_not_dropped_with_the_agent():
    from types import SimpleNamespace

    from framelog.pipeline.agents.pipeline import _decode_or_dead_letter
    from framelog.streams.exceptions import DecodeError

    sent = []

    class Codec:
        def decode_for_topic(self, topic: str, value: bytes):
            raise DecodeError("not_avro", "no single-object marker")

    class Emitter:
        async def dead_letter(self, topic: str, value: bytes, **kw) -> None:
            sent.append((topic, value, kw["reason"]))
            if len(sent) == 1:
                raise DeliveryError("timeout", "1 of 1 dead letter(s) not acknowledged within 30s")

    event = SimpleNamespace(message=SimpleNamespace(topic="cdn.commands", partition=2, offset=7, key=b"k",
                                                    value=b"junk"))
    assert asyncio.run(_decode_or_dead_letter(Codec(), Emitter(), event)) is None
    assert sent == [("cdn.commands", b"junk", "not_avro")] * 2


def test_the_embedded_analytics_sink_is_started_again_after_an_error_and_stops_when_asked():
    from framelog.sinks.clickhouse.runner import RestartingSink

    runs: list[str] = []

    class Runner:
        def run(self) -> None:
            runs.append("run")
            if len(runs) == 1:
                raise RuntimeError("commit_failed: Broker: Not coordinator")

        def stop(self) -> None:
            runs.append("stop")

    sink = RestartingSink(Runner, NO_WAIT)
    sink.run()                              # the first runner fails, the second one ends normally
    assert runs == ["run", "run"] and sink.restarts == 1
    sink.stop()
    assert runs[-1] == "stop"
