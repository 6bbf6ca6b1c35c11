"""Reading delivery steps back, and replaying an endpoint's messages from the log.

A replay sends again, in event order, every message the endpoint was ever
offered (since a time), with its original ``webhook-id`` and body and a fresh
timestamp and signature; each attempt is recorded on ``webhooks.deliveries``
with ``replay`` set, so it never changes what the delivery worker thinks is
pending or settled. Used by ``framelog webhooks replay`` and
``POST /v1/webhooks/{id}/replay``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from framelog.core.config import StreamsConfig, WebhooksConfig
from framelog.processors.webhook_signing import derive_secret
from framelog.processors.webhooks import Endpoint, iso, millis
from framelog.schemas.records import WebhookDelivery
from framelog.sinks.webhook_transport import post_message, webhook_client
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord
from framelog.streams.producer import EventProducer
from framelog.streams.replay import ReplayedTable
from framelog.views.webhook_registry import read_deliveries

READ_TIMEOUT = 60.0


class _EndpointSteps(ReplayedTable):
    def __init__(self, streams: StreamsConfig, endpoint_id: str):
        super().__init__(streams, (topics.WEBHOOK_DELIVERIES,), group_prefix="framelog-webhook-steps")
        self.endpoint_id = endpoint_id
        self.steps: list[dict[str, Any]] = []

    def _fold(self, record: DecodedRecord | Mapping[str, Any]) -> None:
        if isinstance(record, DecodedRecord) and record.value.get("endpoint_id") == self.endpoint_id:
            self.steps.append(record.value)


def step_view(v: Mapping[str, Any]) -> dict[str, Any]:
    return {"message_id": v["message_id"], "event_type": v["event_type"], "video_id": v["video_id"],
            "outcome": v["outcome"], "attempt": v["attempt"], "status_code": v.get("status_code"),
            "latency_ms": v.get("latency_ms"), "error": v.get("error"), "replay": bool(v.get("replay")),
            "at": iso(millis(v["event_time"])), "occurred_at": iso(millis(v["occurred_at"])),
            "next_attempt_at": iso(millis(v["next_attempt_at"])) if v.get("next_attempt_at") else None}


def delivery_steps(streams: StreamsConfig, endpoint_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The endpoint's latest ``limit`` delivery steps, oldest first."""
    with _EndpointSteps(streams, endpoint_id) as table:
        if not table.wait_ready(READ_TIMEOUT):
            raise TimeoutError(f"the delivery log did not catch up within {READ_TIMEOUT:g}s")
        with table._lock:
            steps = list(table.steps)
    steps.sort(key=lambda v: millis(v["event_time"]))
    return [step_view(v) for v in steps[-limit:]]


@dataclass
class ReplaySummary:
    endpoint_id: str
    since_ms: int
    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint_id, "since": iso(self.since_ms) if self.since_ms else None,
                "replayed": len(self.delivered) + len(self.failed), "delivered": len(self.delivered),
                "failed": len(self.failed)}


def replay_endpoint(streams: StreamsConfig, webhooks: WebhooksConfig, endpoint: Endpoint, *, since_ms: int,
                    producer: EventProducer, master: bytes) -> ReplaySummary:
    """Send the endpoint's messages that happened at or after ``since_ms`` again, in event order
    (``streams``: ``config.streams``, to read them back; ``webhooks``: ``config.webhooks``, how to send)."""
    messages = [v for (eid, _), v in read_deliveries(streams, READ_TIMEOUT).items()
                if eid == endpoint.endpoint_id and millis(v["occurred_at"]) >= since_ms]
    messages.sort(key=lambda v: (millis(v["occurred_at"]), v["message_id"]))
    secret = derive_secret(master, endpoint.endpoint_id, endpoint.secret_salt)
    out = ReplaySummary(endpoint.endpoint_id, since_ms)
    with webhook_client(webhooks) as client:
        for v in messages:
            result = post_message(client, endpoint.url, secret, v["message_id"], v["payload"])
            (out.delivered if result.ok else out.failed).append(v["message_id"])
            producer.enqueue(topics.WEBHOOK_DELIVERIES, WebhookDelivery(
                endpoint_id=endpoint.endpoint_id, message_id=v["message_id"],
                event_type=v["event_type"], video_id=v["video_id"], occurred_at=v["occurred_at"],
                payload=v["payload"], outcome="delivered" if result.ok else "failed", attempt=1,
                status_code=result.status_code, latency_ms=result.latency_ms, error=result.error,
                source_topic=v.get("source_topic") or "", source_partition=v.get("source_partition") or 0,
                source_offset=int(v["source_offset"]) if v.get("source_offset") is not None else -1, replay=True),
                key=endpoint.endpoint_id)
    producer.flush(30.0)
    return out
