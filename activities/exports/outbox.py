"""The export workflow's activity: take a batch of a sink's pending outbox rows, deliver it, mark it.

Rows are marked only after the sink accepted them, in one transaction: a failure before that leaves every row
pending, and the activity's retry sends them again (sinks drop the repeats by their stable message ids). Rows a
sink does not want, or whose tenant has the sink's flag off, are marked with the batch without being sent, so
they never hold the outbox up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.exports.sink import Sink
from ops.metrics import EXPORT_LAG_SECONDS, EXPORTED_EVENTS
from schemas.exports import SINK_FLAGS, ExportBatchInput, ExportBatchOutput, OutboxEvent
from store import queries
from store.flag_cache import FlagCache

HEARTBEAT_EVERY_S = 5.0
"""While a sink delivers, the activity heartbeats this often: the workflow's heartbeat timeout is a few times
longer, so a worker that died mid-delivery is noticed long before the start-to-close timeout."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ExportActivities:
    """The export activity's dependencies: sessions, the process's flag cache, the configured sinks, a clock."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        flags: FlagCache,
        sinks: Sequence[Sink],
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._sessions = sessions
        self._flags = flags
        self._sinks = {sink.name: sink for sink in sinks}
        self._clock = clock

    @property
    def sinks(self) -> Sequence[Sink]:
        return tuple(self._sinks.values())

    @activity.defn
    async def export_batch(self, input: ExportBatchInput) -> ExportBatchOutput:
        """Deliver the sink's oldest pending rows once a full batch waits or the oldest is `max_age_s` old;
        otherwise send nothing and say how long to wait."""
        sink = self._sinks.get(input.sink)
        if sink is None:
            # Retryable: another worker, configured for this sink, may take the next attempt.
            raise ApplicationError(f"no {input.sink} sink is configured on this worker", type="SinkNotConfigured")
        lag = EXPORT_LAG_SECONDS.labels(sink=input.sink)
        async with self._sessions() as session:
            rows = await queries.pending_events(session, input.sink, input.batch_size)
        if not rows:
            lag.set(0)
            return ExportBatchOutput(selected=0, sent=0, more=False, wait_s=input.max_age_s)
        age = max((self._clock() - rows[0].created_at).total_seconds(), 0.0)
        # Set before delivering: while a sink is down, every retry shows the lag growing.
        lag.set(age)
        if len(rows) < input.batch_size and age < input.max_age_s:
            return ExportBatchOutput(selected=0, sent=0, more=False, wait_s=input.max_age_s - age)

        events = [OutboxEvent.model_validate(row, from_attributes=True) for row in rows]
        wanted = await self._wanted(sink, events)
        if wanted:
            await _heartbeating(sink.deliver(wanted))
        async with self._sessions() as session, session.begin():
            await queries.mark_exported(session, input.sink, [event.id for event in events], self._clock())
            oldest = await queries.oldest_pending(session, input.sink)
        EXPORTED_EVENTS.labels(sink=input.sink).inc(len(wanted))
        lag.set(0 if oldest is None else max((self._clock() - oldest).total_seconds(), 0.0))
        return ExportBatchOutput(selected=len(rows), sent=len(wanted), more=len(rows) == input.batch_size, wait_s=0)

    async def _wanted(self, sink: Sink, events: list[OutboxEvent]) -> list[OutboxEvent]:
        """The events `sink` takes and whose tenant has the sink's flag on (flags from the process's cache)."""
        flag = SINK_FLAGS[sink.name]
        wanted: list[OutboxEvent] = []
        for event in events:
            if sink.wants(event) and flag in await self._flags.enabled(event.tenant_id):
                wanted.append(event)
        return wanted


async def _heartbeating(work: Awaitable[None]) -> None:
    """Await `work`, heartbeating every `HEARTBEAT_EVERY_S` until it is done; cancelled with the activity."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY_S)
            if done:
                break
            activity.heartbeat()
    finally:
        task.cancel()  # a no-op once it is done; stops the delivery when the activity is cancelled
    task.result()
