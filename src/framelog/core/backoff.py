"""The one exponential backoff (``Backoff``: delay, jittered), defined in the light client.

framelog-client (client/) ships alone with only httpx, and its upload and
analytics clients retry with this same rule, so the definition lives there;
the back end's retry loops (stage retries, webhook deliveries, replayed
tables, the live CLI) import it through this module.
"""
from __future__ import annotations

from framelog_client.backoff import Backoff

__all__ = ["Backoff"]
