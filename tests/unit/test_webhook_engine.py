"""The delivery engine's bookkeeping: order per (endpoint, video), retries that block only their video,
parking, and which source offsets may be committed (fake producer and sender; no Kafka, no HTTP)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from framelog.core.config import get_config
from framelog.pipeline.webhooks import DeliveryEngine, Message, SourceOffsets
from framelog.processors.webhooks import Endpoint
from framelog.sinks.webhook_transport import AttemptResult


class FakeProducer:
    def __init__(self):
        self.records, self.pending = [], []

    def enqueue(self, topic, record, key=None, on_delivery=None):
        self.records.append(record.to_avro())
        self.pending.append(on_delivery)

    def ack_all(self):
        for cb in self.pending:
            cb(None, None)
        self.pending = []


class Registry:
    def __init__(self, *ids):
        self.endpoints = {i: Endpoint(i, "alice", None, f"https://{i}.example", (), "salt", 0) for i in ids}

    def get(self, endpoint_id):
        return self.endpoints.get(endpoint_id)


class Sender:
    """Answers per (url, body substring) rule; records the order of calls."""
    def __init__(self, failing=()):
        self.failing = set(failing)
        self.calls = []

    def __call__(self, url, secret, msg_id, body):
        self.calls.append((url, msg_id))
        ok = not any(f in body for f in self.failing)
        return AttemptResult(ok, 200 if ok else 503, 1, None if ok else "HTTP 503")


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def engine(sender, *endpoints):
    config = get_config()
    config = replace(config, webhooks=replace(config.webhooks, retry_backoff_initial=10.0, retry_jitter=0.0,
                                              max_attempts=3))
    producer, offsets, clock = FakeProducer(), SourceOffsets(), Clock()
    e = DeliveryEngine(config.webhooks, producer, Registry(*endpoints), offsets, sender, master=b"k" * 32, clock=clock)
    e.pool.shutdown()
    e.pool = ThreadPoolExecutor(max_workers=1)
    return e, producer, offsets, clock


def msg(endpoint, video, at, offset, kind="video.ready"):
    return Message(endpoint, f"msg_{endpoint}_{video}_{at}", kind, video, at, f'{{"v":"{video}","at":{at}}}',
                   ("video.assets", 0, offset))


def run(e, rounds=20):
    for _ in range(rounds):
        e.dispatch()
        deadline = time.monotonic() + 2
        while e.futures and time.monotonic() < deadline:
            e.collect()


def test_order_per_video_and_a_failing_video_blocks_only_itself():
    sender = Sender(failing=['"v":"bad"'])
    e, producer, offsets, clock = engine(sender, "ep_a")
    for i, m in enumerate([msg("ep_a", "bad", 10, 0), msg("ep_a", "good", 11, 1), msg("ep_a", "bad", 12, 2),
                           msg("ep_a", "good", 5, 3)]):         # an older event of 'good' arrives last
        e.offer(m)
        offsets.polled("video.assets", 0, i)
    run(e)
    delivered = [r["message_id"] for r in producer.records if r["outcome"] == "delivered"]
    assert delivered == ["msg_ep_a_good_5", "msg_ep_a_good_11"]                 # event order, not arrival order
    outcomes = {(r["message_id"], r["outcome"]) for r in producer.records}
    assert ("msg_ep_a_bad_10", "failed") in outcomes and ("msg_ep_a_bad_12", "queued") in outcomes
    assert not any(call[1] == "msg_ep_a_bad_12" for call in sender.calls)      # never overtakes its video's head
    producer.ack_all()
    assert offsets.committable()[("video.assets", 0)] == 4      # delivered or parked: every offset may commit
    clock.t += 100
    run(e)
    clock.t += 100
    run(e)
    producer.ack_all()
    exhausted = [r for r in producer.records if r["outcome"] == "exhausted"]
    assert [r["message_id"] for r in exhausted][:1] == ["msg_ep_a_bad_10"] and exhausted[0]["attempt"] == 3


def test_offsets_wait_for_unsettled_messages():
    sender = Sender()
    e, producer, offsets, _ = engine(sender, "ep_a")
    e.offer(msg("ep_a", "v", 1, 0))
    offsets.polled("video.assets", 0, 0)
    offsets.polled("video.assets", 0, 1)           # offset 1: no message for anyone
    assert offsets.committable()[("video.assets", 0)] == 0
    run(e)
    assert offsets.committable()[("video.assets", 0)] == 0     # delivered, but its record is not acknowledged yet
    producer.ack_all()
    assert offsets.committable()[("video.assets", 0)] == 2


def test_settled_messages_are_not_sent_again_and_pending_ones_resume():
    sender = Sender()
    e, producer, offsets, _ = engine(sender, "ep_a")
    done, parked = msg("ep_a", "v", 1, 0), msg("ep_a", "v", 2, 1)
    records = {("ep_a", done.message_id): {"outcome": "delivered", "occurred_at": 1},
               ("ep_a", parked.message_id): {"outcome": "failed", "endpoint_id": "ep_a",
                                            "message_id": parked.message_id,
                                            "event_type": "video.ready", "video_id": "v", "occurred_at": 2,
                                            "payload": parked.body, "attempt": 2, "next_attempt_at": None,
                                            "source_topic": "video.assets", "source_partition": 0, "source_offset": 1}}
    assert e.resume(records, {0}) == 1
    e.offer(done)
    e.offer(parked)
    run(e)
    assert [c[1] for c in sender.calls] == [parked.message_id]
    assert [r["attempt"] for r in producer.records if r["outcome"] == "delivered"] == [3]


def test_a_deleted_endpoint_is_dropped_and_releases_its_offsets():
    sender = Sender(failing=['"v"'])
    e, producer, offsets, _ = engine(sender, "ep_a")
    e.offer(msg("ep_a", "v", 1, 0))
    offsets.polled("video.assets", 0, 0)
    e.registry.endpoints["ep_a"] = replace(e.registry.endpoints["ep_a"], deleted=True)
    run(e)
    assert e.pending() == 0 and offsets.committable()[("video.assets", 0)] == 1


def test_event_time_horizon_waits_for_lagging_partitions():
    from framelog.pipeline.webhooks import EventTimeHorizon

    h = EventTimeHorizon()
    up, st = ("video.uploads", 0), ("video.stage-transitions", 0)
    assigned = frozenset({up, st})
    assert h.horizon({up: 0, st: 0}, {}, assigned) == float("-inf")     # no end known yet: nothing may go
    assert h.horizon({}, {up: 5, st: 5}, assigned) == float("inf")       # no position known: not waited for
    h.saw(*st, 500)
    h.saw(*up, 100)
    # the uploads partition still lags behind its end: events after t=100 wait for it
    assert h.horizon({up: 3, st: 9}, {up: 10, st: 9}, assigned) == 100
    h.saw(*up, 400)
    assert h.horizon({up: 10, st: 9}, {up: 10, st: 9}, assigned) == float("inf")      # both read to their end
    e, producer, offsets, _ = engine(Sender(), "ep_a")
    e.offer(msg("ep_a", "v", 200, 0))
    e.dispatch(horizon_ms=100)
    assert not e.futures
    e.dispatch(horizon_ms=200)
    assert len(e.futures) == 1
