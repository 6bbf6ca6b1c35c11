"""The one exponential backoff (``Backoff``: delay, jittered), defined in the light client.

framelog-client (client/) ships alone with only httpx, and its upload and
analytics clients retry with this same rule, so the definition lives there;
the back end's retry loops (stage retries, webhook deliveries, replayed
tables, the live CLI) import it through this module.
"""
from __future__ import annotations

from framelog_client.backoff import Backoff

__all__ = ["OUTAGE_BACKOFF", "Backoff"]

# Waiting out an outage of the log or the store (a record handled again, an embedded consumer started again):
# first after about a second, then up to half a minute between tries.
OUTAGE_BACKOFF = Backoff(1.0, 30.0, jitter=0.25)
