"""Webhook endpoints and delivery records replayed from the log.

``EndpointRegistry``: the registrations on ``webhooks.endpoints`` (compacted,
one whole-state record per endpoint), folded by ``processors.webhooks.EndpointFold``;
the API reads it to list endpoints, the delivery worker to route events.

``DeliveryLog``: the steps on ``webhooks.deliveries``, folded to the last step
of every (endpoint, message) that was not a replay: what is still pending
(parked or waiting for a retry, with its message) and what is settled
(delivered, exhausted, cancelled). A restarted worker resumes the pending
ones and does not resend settled ones; a replay reads the messages back.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framelog.core.config import StreamsConfig
from framelog.processors.webhooks import Endpoint, EndpointFold
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord
from framelog.streams.replay import ReplayedTable

SETTLED = frozenset({"delivered", "exhausted", "cancelled"})
PENDING = frozenset({"queued", "failed"})


class EndpointRegistry(ReplayedTable):
    def __init__(self, streams: StreamsConfig, *, group_id: str | None = None):
        super().__init__(streams, (topics.WEBHOOK_ENDPOINTS,), group_prefix="framelog-webhook-endpoints",
                         group_id=group_id)
        self._fold_state = EndpointFold()

    def _fold(self, record: DecodedRecord | Mapping[str, Any]) -> None:
        value = record.value if isinstance(record, DecodedRecord) else record
        self._fold_state.apply(value)

    def get(self, endpoint_id: str) -> Endpoint | None:
        with self._lock:
            return self._fold_state.endpoints.get(endpoint_id)

    def live(self) -> list[Endpoint]:
        with self._lock:
            return self._fold_state.live()


class DeliveryLog(ReplayedTable):
    """The last non-replay step of every message (a dict per WebhookDelivery record)."""

    def __init__(self, streams: StreamsConfig, *, group_id: str | None = None):
        super().__init__(streams, (topics.WEBHOOK_DELIVERIES,), group_prefix="framelog-webhook-deliveries",
                         group_id=group_id)
        self.last: dict[tuple[str, str], dict[str, Any]] = {}

    def _fold(self, record: DecodedRecord | Mapping[str, Any]) -> None:
        if not isinstance(record, DecodedRecord) or record.name != "WebhookDelivery":
            return
        value = record.value
        if value.get("replay") or value.get("outcome") not in SETTLED | PENDING:
            return
        key = (value["endpoint_id"], value["message_id"])
        if self.last.get(key, {}).get("outcome") in SETTLED and value["outcome"] in PENDING:
            return                         # a late 'queued' never reopens a settled message
        self.last[key] = dict(value)

    def snapshot(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._lock:
            return dict(self.last)


def read_deliveries(streams: StreamsConfig, timeout: float) -> dict[tuple[str, str], dict[str, Any]]:
    """Replay the deliveries topic once; TimeoutError if it does not catch up in time."""
    with DeliveryLog(streams) as log:
        if not log.wait_ready(timeout):
            raise TimeoutError(f"the delivery log did not catch up within {timeout:g}s"
                               + (f" ({log.last_error})" if log.last_error else ""))
        return log.snapshot()
