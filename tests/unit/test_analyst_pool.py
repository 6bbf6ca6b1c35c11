"""The analysts' pool: a cap, not a queue; a slot comes back only when the engine is done."""
import asyncio
import dataclasses
import threading

from framelog.api.analyst_pool import AnalystPool
from framelog.core.config import load_config


class FakeSession:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def pool_of(capacity: int) -> tuple[AnalystPool, list[FakeSession]]:
    limits = dataclasses.replace(load_config().analyst_sql, max_concurrent_queries=capacity)
    sessions: list[FakeSession] = []

    def open_session():
        sessions.append(FakeSession())
        return sessions[-1]

    return AnalystPool(limits, open_session), sessions


def test_over_the_cap_is_refused_at_once_and_a_finished_query_frees_its_slot():
    pool, sessions = pool_of(2)
    release = threading.Event()
    used = []

    def work(session):
        used.append(session)
        release.wait(10)
        return session

    first, second = pool.try_submit(work), pool.try_submit(work)
    assert first is not None and second is not None
    assert pool.try_submit(work) is None                     # full: refused, not queued
    release.set()
    assert {first.result(10), second.result(10)} == set(sessions)   # each on its own session
    third = pool.try_submit(lambda s: s)
    assert third is not None and third.result(10) in sessions
    pool.close()
    assert all(s.closed for s in sessions)
    assert pool.retry_after >= 1


def test_a_failing_query_frees_its_slot_too():
    pool, _ = pool_of(1)

    def boom(session):
        raise ValueError("engine said no")

    future = pool.try_submit(boom)
    assert isinstance(future.exception(10), ValueError)
    again = pool.try_submit(lambda s: "ok")
    assert again is not None and again.result(10) == "ok"
    pool.close()


def test_healthz_runs_on_the_event_loop():
    """/healthz must not wait for a thread pool the analysts or the engine could keep busy."""
    from framelog.api.app import create_app

    app = create_app(load_config())
    route = next(r for r in app.routes if getattr(r, "path", None) == "/healthz")
    assert asyncio.iscoroutinefunction(route.endpoint)
