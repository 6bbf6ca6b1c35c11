"""Dead-lettering: keep an unusable record byte for byte, with why, and move on.

A consumer that stops on a poisoned record stops the whole partition; one that
drops it silently loses data. framelog writes a DeadLetter event (original
bytes, topic, partition, offset, reason, error) to ``<topic>.dlq`` and goes on;
an operator can inspect and replay from there.
"""
from __future__ import annotations

import logging

from prometheus_client import Counter

from framelog.core.clock import Clock
from framelog.schemas.record import now_millis
from framelog.schemas.records import DeadLetter
from framelog.streams.producer import EventProducer
from framelog.streams.topics import dead_letter_topic

log = logging.getLogger(__name__)

DEAD_LETTER = "DeadLetter"
DEAD_LETTERS = Counter("framelog_dead_letters_total", "Records sent to a dead-letter topic, by original topic",
                       ["topic"])
DLQ_SUFFIX = dead_letter_topic("")


def dead_letter_event(original_topic: str, value: bytes | None, *, key: bytes | str | None = None,
                      partition: int | None = None, offset: int | None = None, reason: str,
                      error: str, consumer_group: str | None = None, clock: Clock | None = None) -> DeadLetter:
    """The DeadLetter record for one failed record."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    return DeadLetter(event_time=now_millis(clock), original_topic=original_topic, partition=partition,
                      offset=offset, original_key=key, original_value=bytes(value or b""), reason=reason,
                      error=error[:10_000], consumer_group=consumer_group)


class DeadLetterWriter:
    """Sends DeadLetter events through an EventProducer, keyed by the original key."""

    def __init__(self, producer: EventProducer, consumer_group: str | None = None):
        self.producer = producer
        self.consumer_group = consumer_group
        self.sent = 0

    def send(self, original_topic: str, value: bytes | None, *, key: bytes | str | None = None,
             partition: int | None = None, offset: int | None = None, reason: str, error: str) -> bool:
        """Queue the dead letter; False (and a log line) for records of a DLQ itself, which never nest."""
        if original_topic.endswith(DLQ_SUFFIX):
            log.error("undecodable record in dead-letter topic %s[%s]@%s (%s): left in place",
                      original_topic, partition, offset, reason)
            return False
        event = dead_letter_event(original_topic, value, key=key, partition=partition, offset=offset,
                                  reason=reason, error=error, consumer_group=self.consumer_group)
        self.producer.enqueue(dead_letter_topic(original_topic), event, key=key)
        self.sent += 1
        DEAD_LETTERS.labels(original_topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s: %s", original_topic, partition, offset, reason, error)
        return True

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every dead letter is acknowledged (before committing past the originals)."""
        self.producer.flush(timeout)
