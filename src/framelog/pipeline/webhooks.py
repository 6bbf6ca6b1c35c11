"""The ``webhooks`` worker group: events from the log, delivered to the endpoints that subscribed.

Source topics: ``video.uploads``, ``video.stage-transitions``, ``video.assets``
and ``storage.tier-transitions``, consumed by the group ``framelog-webhooks``
with the range assignor, so partition *i* of every source topic (all keyed
by video id, same partition count) belongs to one member: every event of a
video is handled by one worker.

Delivery, per (endpoint, video) a queue ordered by event time:

* the head is POSTed (signed, ``sinks.webhook_transport``) from a thread pool;
  the poll loop never waits for an endpoint. At most one request per queue
  is in flight (order per video), at most
  ``webhooks.max_in_flight_per_endpoint`` per endpoint (one dead endpoint
  cannot take every thread), so other videos and other endpoints go on;
* a failed attempt is retried after ``processors.webhooks.backoff_delay``;
  after ``max_attempts`` the message is ``exhausted`` and the queue moves on;
* every step is a ``WebhookDelivery`` record on ``webhooks.deliveries``
  (attempt, status code, latency, error, and the message itself).

Offsets: a source record's offset is committed once each of its messages is
delivered, given up, or *parked durably*: a message whose first attempt failed,
or that waits behind one, is written to ``webhooks.deliveries`` (outcome
``failed``/``queued``) and its source offset may then be committed. A worker
that starts (or is assigned partitions) first resumes the pending messages of
its partitions from that log, then reads the sources past the committed
offsets; messages already delivered are not sent again. A crash between a 2xx
answer and its record means the message is sent again with the same
``webhook-id`` (at least once; receivers deduplicate on it).
"""
from __future__ import annotations

import bisect
import logging
import signal
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

from framelog.core.config import SecurityConfig, StreamsConfig, WebhooksConfig
from framelog.processors.tokens import load_or_create_secret
from framelog.processors.webhook_signing import derive_secret, message_id
from framelog.processors.webhooks import Endpoint, WebhookEvent, backoff_delay, derive, millis, subscribers
from framelog.schemas.records import WebhookDelivery, WebhookDeliveryOutcome
from framelog.sinks.webhook_transport import AttemptResult, post_message, webhook_client
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord, EventConsumer
from framelog.streams.exceptions import DecodeError, ValidationError
from framelog.streams.producer import EventProducer
from framelog.views.catalog import VideoCatalog
from framelog.views.webhook_registry import PENDING, SETTLED, EndpointRegistry, read_deliveries

log = logging.getLogger(__name__)

GROUP_ID = "framelog-webhooks"
SOURCE_TOPICS = (topics.UPLOADS, topics.STAGE_TRANSITIONS, topics.ASSETS, topics.TIER_TRANSITIONS)
READY_TIMEOUT = 60.0
SYNC_TIMEOUT = 5.0
COMMIT_INTERVAL = 1.0
POLL_TIMEOUT = 0.2
IDLE_TICK = 0.05

DELIVERIES = PromCounter("webhook_deliveries", "webhook delivery steps by outcome", ["outcome"])
LATENCY = Histogram("webhook_delivery_latency_seconds", "wall time of webhook delivery attempts")


@dataclass
class Message:
    endpoint_id: str
    message_id: str
    event_type: str
    video_id: str
    occurred_at_ms: int
    body: str
    source: tuple[str, int, int]                 # topic, partition, offset
    attempt: int = 0                             # attempts made so far
    next_at: float = 0.0                         # wall-clock seconds when the head may be sent
    parked: bool = False                         # a pending record of it is on the log (or being written)
    holds_source: bool = False                   # its source offset waits for it
    in_flight: bool = False

    @property
    def order(self) -> tuple[int, str]:
        return (self.occurred_at_ms, self.message_id)

    @property
    def key(self) -> tuple[str, str]:
        return (self.endpoint_id, self.message_id)


def message_from_record(value: dict[str, Any]) -> Message:
    """A pending message resumed from its last WebhookDelivery record."""
    nxt = value.get("next_attempt_at")
    return Message(value["endpoint_id"], value["message_id"], value["event_type"], value["video_id"],
                   millis(value.get("occurred_at")), value["payload"],
                   (value.get("source_topic") or "", int(value.get("source_partition") or 0),
                    int(value.get("source_offset") if value.get("source_offset") is not None else -1)),
                   attempt=int(value.get("attempt") or 1) - (1 if value.get("outcome") == "queued" else 0),
                   next_at=millis(nxt) / 1000 if nxt else 0.0, parked=True)


class SourceOffsets:
    """Which polled source records still wait for messages, and so what may be committed."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}
        self.holds: dict[tuple[str, int], Counter[int]] = defaultdict(Counter)
        self.dirty = False

    def polled(self, topic: str, partition: int, offset: int) -> None:
        self.next[(topic, partition)] = max(self.next.get((topic, partition), 0), offset + 1)
        self.dirty = True

    def hold(self, source: tuple[str, int, int]) -> None:
        self.holds[source[:2]][source[2]] += 1

    def release(self, source: tuple[str, int, int]) -> None:
        held = self.holds.get(source[:2])
        if held is not None and held[source[2]] > 0:
            held[source[2]] -= 1
            if held[source[2]] == 0:
                del held[source[2]]
            self.dirty = True

    def committable(self) -> dict[tuple[str, int], int]:
        out = {}
        for tp, nxt in self.next.items():
            held = self.holds.get(tp)
            out[tp] = min(held) if held else nxt
        return out

    def forget(self, partitions: set[int]) -> None:
        for tp in [tp for tp in self.next if tp[1] in partitions]:
            self.next.pop(tp, None)
            self.holds.pop(tp, None)


class DeliveryEngine:
    """Per-(endpoint, video) queues, attempts on a thread pool, delivery records; driven by the poll loop."""

    def __init__(self, webhooks: WebhooksConfig, producer: EventProducer, registry: Any, offsets: SourceOffsets,
                 post: Callable[[str, str, str, str], AttemptResult], *, master: bytes,
                 clock: Callable[[], float] = time.time):
        self.w = webhooks                     # the webhooks section (config.webhooks): all the engine reads
        self.producer = producer
        self.registry = registry
        self.offsets = offsets
        self.post = post
        self.master = master
        self.clock = clock
        self.queues: dict[tuple[str, str], deque[Message]] = {}
        self.known: set[tuple[str, str]] = set()
        self.settled: set[tuple[str, str]] = set()
        self.in_flight: Counter[str] = Counter()
        self.futures: dict[Future[AttemptResult], Message] = {}
        self.pool = ThreadPoolExecutor(max_workers=self.w.delivery_threads, thread_name_prefix="webhook-post")
        self._secrets: dict[str, str] = {}

    # ------------------------------------------------------------ queueing

    def resume(self, records: dict[tuple[str, str], dict[str, Any]], partitions: set[int]) -> int:
        """Take the settled ids, and the pending messages of ``partitions``, from the delivery log."""
        resumed = 0
        for key, value in sorted(records.items(), key=lambda kv: (kv[1].get("occurred_at") or 0, kv[0])):
            if value.get("outcome") in SETTLED:
                self.settled.add(key)
            elif value.get("outcome") in PENDING and int(value.get("source_partition") or 0) in partitions \
                    and key not in self.known:
                endpoint = self.registry.get(key[0])
                if endpoint is None or endpoint.deleted:
                    continue
                self._insert(message_from_record(value))
                resumed += 1
        return resumed

    def offer(self, msg: Message) -> None:
        """A message derived from a polled record (skipped if known or settled already)."""
        if msg.key in self.known or msg.key in self.settled:
            return
        msg.holds_source = True
        self.offsets.hold(msg.source)
        self._insert(msg)
        queue = self.queues[(msg.endpoint_id, msg.video_id)]
        if queue[0] is not msg and queue[0].attempt > 0:
            self._park(msg)                    # behind a failing message: park it, so its offset can commit

    def _insert(self, msg: Message) -> None:
        queue = self.queues.setdefault((msg.endpoint_id, msg.video_id), deque())
        self.known.add(msg.key)
        started = 1 if queue and (queue[0].in_flight or queue[0].attempt > 0) else 0
        orders = [m.order for m in list(queue)[started:]]
        queue.insert(started + bisect.bisect_right(orders, msg.order), msg)

    def drop_partitions(self, partitions: set[int]) -> None:
        """Partitions taken away: their messages are someone else's now (parked ones are on the log)."""
        for qkey, queue in list(self.queues.items()):
            for m in [m for m in queue if m.source[1] in partitions]:
                queue.remove(m)
                self.known.discard(m.key)
            if not queue:
                del self.queues[qkey]

    def drop_endpoint(self, endpoint_id: str) -> None:
        for qkey in [k for k in self.queues if k[0] == endpoint_id]:
            for m in self.queues.pop(qkey):
                self.known.discard(m.key)
                self._release(m)

    # ------------------------------------------------------------ records

    def _record(self, msg: Message, outcome: WebhookDeliveryOutcome, result: AttemptResult | None = None,
                next_at: float | None = None, settles: bool = False) -> None:
        record = WebhookDelivery(
            endpoint_id=msg.endpoint_id, message_id=msg.message_id, event_type=msg.event_type,
            video_id=msg.video_id, occurred_at=msg.occurred_at_ms, payload=msg.body, outcome=outcome,
            attempt=msg.attempt + (1 if outcome == "queued" else 0), status_code=result.status_code if result else None,
            latency_ms=result.latency_ms if result else None, error=result.error if result else None,
            next_attempt_at=int(next_at * 1000) if next_at is not None else None, source_topic=msg.source[0],
            source_partition=msg.source[1], source_offset=msg.source[2])
        DELIVERIES.labels(outcome).inc()

        def acked(err: Any, _msg: Any) -> None:
            if err is None and settles:
                self._release(msg)
        self.producer.enqueue(topics.WEBHOOK_DELIVERIES, record, key=msg.endpoint_id, on_delivery=acked)

    def _release(self, msg: Message) -> None:
        if msg.holds_source:
            msg.holds_source = False
            self.offsets.release(msg.source)

    def _park(self, msg: Message) -> None:
        if not msg.parked:
            msg.parked = True
            self._record(msg, "queued", settles=True)

    # ------------------------------------------------------------ sending

    def secret(self, endpoint: Endpoint) -> str:
        key = f"{endpoint.endpoint_id}:{endpoint.secret_salt}"
        if key not in self._secrets:
            self._secrets[key] = derive_secret(self.master, endpoint.endpoint_id, endpoint.secret_salt)
        return self._secrets[key]

    def dispatch(self, horizon_ms: float = float("inf")) -> int:
        """Start every head that is due, within the limits; returns how many were started.

        ``horizon_ms``: heads of events after this time wait (``EventTimeHorizon``): an earlier event
        of the same video may still be unread on another source topic.
        """
        started = 0
        now = self.clock()
        busy = len(self.futures)
        for (endpoint_id, _), queue in list(self.queues.items()):
            if busy >= self.w.delivery_threads:
                break
            head = queue[0]
            if head.in_flight or head.next_at > now or head.occurred_at_ms > horizon_ms \
                    or self.in_flight[endpoint_id] >= self.w.max_in_flight_per_endpoint:
                continue
            endpoint = self.registry.get(endpoint_id)
            if endpoint is None or endpoint.deleted:
                self.drop_endpoint(endpoint_id)
                continue
            head.in_flight = True
            self.in_flight[endpoint_id] += 1
            fut = self.pool.submit(self.post, endpoint.url, self.secret(endpoint), head.message_id, head.body)
            self.futures[fut] = head
            busy += 1
            started += 1
        return started

    def collect(self) -> int:
        """Handle finished attempts; returns how many."""
        done = [f for f in self.futures if f.done()]
        for fut in done:
            msg = self.futures.pop(fut)
            msg.in_flight = False
            self.in_flight[msg.endpoint_id] -= 1
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - a bug in one attempt is a failed attempt
                result = AttemptResult(False, None, 0, f"{type(exc).__name__}: {exc}"[:300])
            self._finish(msg, result)
        return len(done)

    def _finish(self, msg: Message, result: AttemptResult) -> None:
        queue = self.queues.get((msg.endpoint_id, msg.video_id))
        if queue is None or not queue or queue[0] is not msg:
            return                                     # dropped meanwhile (revoked, endpoint deleted)
        msg.attempt += 1
        LATENCY.observe(result.latency_ms / 1000)
        if result.ok or msg.attempt >= self.w.max_attempts:
            self._record(msg, "delivered" if result.ok else "exhausted", result, settles=True)
            if not result.ok:
                log.warning("webhook %s to %s exhausted after %d attempts: %s", msg.message_id, msg.endpoint_id,
                            msg.attempt, result.error)
            queue.popleft()
            self.known.discard(msg.key)
            self.settled.add(msg.key)
            if not queue:
                del self.queues[(msg.endpoint_id, msg.video_id)]
            return
        delay = backoff_delay(msg.attempt, self.w.retry_backoff_initial, self.w.retry_backoff_max, self.w.retry_jitter)
        msg.next_at = self.clock() + delay
        msg.parked = True
        self._record(msg, "failed", result, next_at=msg.next_at, settles=True)
        for follower in list(queue)[1:]:
            self._park(follower)

    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class EventTimeHorizon:
    """Up to which event time every source partition has been read: a video's events come from four
    topics, read at their own pace; while catching up on a backlog, an event is sent only once no
    assigned partition that still lags can hold an earlier one (a partition read to its end holds none).
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], int] = {}

    def saw(self, topic: str, partition: int, event_time_ms: int) -> None:
        key = (topic, partition)
        self.seen[key] = max(self.seen.get(key, 0), event_time_ms)

    def horizon(self, positions: dict[tuple[str, int], int], ends: dict[tuple[str, int], int | None],
                assigned: frozenset[tuple[str, int]]) -> float:
        """``positions``: next offset per partition where known (a partition of a group that never
        committed and not read yet has none: it is not waited for, or an empty one would block forever)."""
        lagging = [tp for tp in assigned
                   if positions.get(tp, -1) >= 0 and (ends.get(tp) is None or positions[tp] < (ends.get(tp) or 0))]
        return min((self.seen.get(tp, float("-inf")) for tp in lagging), default=float("inf"))

    def forget(self, partitions: set[int]) -> None:
        for key in [k for k in self.seen if k[1] in partitions]:
            del self.seen[key]


# ------------------------------------------------------------ routing

class Router:
    """Source records -> messages for the subscribed endpoints."""

    def __init__(self, registry: EndpointRegistry, catalog: VideoCatalog, *, first_stage: str,
                 default_visibility: str, max_payload_bytes: int):
        self.registry = registry
        self.catalog = catalog
        self.first_stage = first_stage                  # config.pipeline.stage_names[0]
        self.default_visibility = default_visibility    # config.security.default_visibility
        self.max_payload_bytes = max_payload_bytes      # config.webhooks.max_payload_bytes

    def owner_of(self, record: DecodedRecord) -> tuple[str | None, str | None]:
        entry = self.catalog.get(record.value["video_id"])
        if entry is None or entry.effective_policy(self.default_visibility) is None:
            self.catalog.sync(SYNC_TIMEOUT)                  # a video this replica has not folded yet
            entry = self.catalog.get(record.value["video_id"])
        policy = entry.effective_policy(self.default_visibility) if entry is not None else None
        if policy is not None:
            return policy.owner_id, policy.workspace_id
        return record.value.get("owner_id") or None, None

    def messages(self, record: DecodedRecord) -> list[Message]:
        event: WebhookEvent | None = derive(record.name, record.value, self.first_stage)
        if event is None or not any(e.wants(event.type) for e in self.registry.live()):
            return []
        owner, workspace = self.owner_of(record)
        body = event.body()
        if len(body.encode()) > self.max_payload_bytes:
            log.warning("webhook %s of %s: body of %d bytes over the limit; not sent", event.type, event.video_id,
                        len(body))
            return []
        return [Message(e.endpoint_id, message_id(e.endpoint_id, event.type, event.source_event_id), event.type,
                        event.video_id, event.occurred_at_ms, body, (record.topic, record.partition, record.offset))
                for e in subscribers(self.registry.live(), event, owner, workspace)]


# ------------------------------------------------------------ the worker

@dataclass(frozen=True)
class WebhookSettings:
    """What the webhooks worker reads of the configuration; pipeline/worker.py fills it."""

    streams: StreamsConfig        # its consumer, producer and replayed tables (``config.streams``)
    webhooks: WebhooksConfig      # delivery: retries, limits, threads, the largest body
    security: SecurityConfig      # the master secret endpoints' secrets derive from; the default visibility
    first_stage: str              # ``config.pipeline.stage_names[0]``: its transitions are video events


@dataclass
class WebhookWorker:
    settings: WebhookSettings
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        settings = self.settings
        registry = EndpointRegistry(settings.streams).start()
        catalog = VideoCatalog(settings.streams).start()
        for table, name in ((registry, "endpoint registry"), (catalog, "video catalog")):
            if not table.wait_ready(READY_TIMEOUT):
                raise RuntimeError(f"the {name} did not catch up within {READY_TIMEOUT:g}s ({table.last_error})")
        producer = EventProducer(settings.streams)
        offsets = SourceOffsets()
        client = webhook_client(settings.webhooks)
        engine = DeliveryEngine(settings.webhooks, producer, registry, offsets,
                                lambda url, secret, mid, body: post_message(client, url, secret, mid, body),
                                master=load_or_create_secret(settings.security, settings.streams.stack.state_dir))
        router = Router(registry, catalog, first_stage=settings.first_stage,
                        default_visibility=settings.security.default_visibility,
                        max_payload_bytes=settings.webhooks.max_payload_bytes)
        horizon = EventTimeHorizon()
        starts: dict[tuple[str, int], int] = {}         # committed offsets when assigned: where reading resumes
        owned: set[int] = set()

        def on_revoke(parts: list[tuple[str, int]]) -> None:
            numbers = {p for _, p in parts}
            self._commit(consumer, offsets, producer, force=True)
            engine.drop_partitions(numbers)
            offsets.forget(numbers)
            horizon.forget(numbers)
            owned.difference_update(numbers)

        consumer = EventConsumer(settings.streams, GROUP_ID, list(SOURCE_TOPICS), on_revoke=on_revoke,
                                 **{"partition.assignment.strategy": "range"})
        last_commit = 0.0
        log.info("webhooks worker: %d endpoint(s) registered; consuming %s", len(registry.live()), SOURCE_TOPICS)
        try:
            while not self.stop.is_set():
                messages = consumer.poll_raw(500, POLL_TIMEOUT if not engine.futures else IDLE_TICK)
                numbers = {p for _, p in consumer.assigned}
                if numbers - owned:                    # newly assigned: resume their parked messages first
                    resumed = engine.resume(read_deliveries(settings.streams, READY_TIMEOUT), numbers - owned)
                    log.info("partitions %s assigned; %d pending message(s) resumed", sorted(numbers - owned), resumed)
                    owned.update(numbers)
                    starts.update({tp: off for tp, off in consumer.committed().items() if off >= 0})
                batch = [r for r in map(self._decode(consumer), messages) if r is not None]
                if batch:
                    registry.sync(SYNC_TIMEOUT)        # endpoints registered before these events
                for record in sorted(batch, key=lambda r: (r.value.get("event_time") or 0, r.topic, r.offset)):
                    for msg in router.messages(record):
                        engine.offer(msg)
                    horizon.saw(record.topic, record.partition, millis(record.value.get("event_time")))
                positions = consumer.polled_positions()
                for (topic, partition), position in positions.items():
                    offsets.polled(topic, partition, position - 1)
                assigned = consumer.assigned
                engine.collect()
                known = {tp: max(starts.get(tp, -1), positions.get(tp, -1), pos)
                         for tp, pos in consumer.positions().items()}
                engine.dispatch(horizon.horizon(known, {tp: consumer.high_watermark(*tp) for tp in assigned},
                                                assigned))
                producer.poll(0)
                if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                    self._commit(consumer, offsets, producer)
                    last_commit = time.monotonic()
        finally:
            try:
                self._commit(consumer, offsets, producer, force=True)
            except Exception as exc:  # noqa: BLE001
                log.warning("final commit: %s", exc)
            engine.close()
            consumer.close()
            producer.flush(10.0)
            registry.stop()
            catalog.stop()
        return 0

    @staticmethod
    def _decode(consumer: EventConsumer) -> Callable[[Any], DecodedRecord | None]:
        """Decode a source message; undecodable ones are skipped (their owners' groups dead-letter them)."""
        def decode(msg: Any) -> DecodedRecord | None:
            try:
                name, value = consumer.codec.decode_for_topic(msg.topic(), msg.value())
            except (DecodeError, ValidationError):
                return None
            key = msg.key()
            return DecodedRecord(msg.topic(), msg.partition(), msg.offset(),
                                 key.decode("utf-8", "replace") if key is not None else None, name, value,
                                 msg.timestamp()[1])
        return decode

    @staticmethod
    def _commit(consumer: EventConsumer, offsets: SourceOffsets, producer: EventProducer,
                force: bool = False) -> None:
        producer.poll(0)
        if not (offsets.dirty or force):
            return
        assigned = consumer.assigned
        wanted = {tp: off for tp, off in offsets.committable().items() if tp in assigned}
        if wanted:
            consumer.commit(wanted)
        offsets.dirty = False


def run_webhooks(settings: WebhookSettings) -> int:
    """``framelog worker --stage webhooks``: run until SIGTERM/SIGINT."""
    worker = WebhookWorker(settings)

    def stop(signum: int, frame: object) -> None:
        worker.stop.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return worker.run()
