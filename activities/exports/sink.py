"""What every sink of the export workflow is: told a batch, it delivers it or raises (Temporal retries)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from schemas.exports import OutboxEvent, SinkName


class Sink(Protocol):
    name: SinkName

    def wants(self, event: OutboxEvent) -> bool:
        """Whether this row is for this sink at all (Langfuse and OTLP take finished jobs only)."""
        ...

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Deliver every event (already filtered by `wants` and the tenant's flag) or raise.

        Delivery is at-least-once: a batch may be sent again after a failure, so a sink gives each message a
        stable id (the event id) that the receiver can drop duplicates by.
        """
        ...
