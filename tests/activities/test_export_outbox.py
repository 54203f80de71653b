"""The export activity on SQLite and PostgreSQL: which outbox rows a sink gets, and when they count as exported.

A scripted sink stands in for RudderStack, Langfuse or the OTLP endpoint; the clock is the test's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.exports import outbox
from activities.exports.outbox import ExportActivities
from domain.flags import default_flags
from schemas.audit import Actor
from schemas.exports import ExportBatchInput, ExportBatchOutput, OutboxEvent, SinkName
from store import queries
from store.engine import AsyncSession
from store.flag_cache import FlagCache
from store.models import EventLog

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class ScriptedSink:
    """Records what it is given; can be told to refuse, to want only some events, and to look at the outbox
    while it delivers (to see whether anything was marked before it accepted)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        name: SinkName = "warehouse",
        *,
        only_types: set[str] | None = None,
    ) -> None:
        self.name: SinkName = name
        self._sessions = sessions
        self.only_types = only_types
        self.failing = False
        self.delivered: list[list[OutboxEvent]] = []
        self.pending_while_delivering: list[int] = []

    def wants(self, event: OutboxEvent) -> bool:
        return self.only_types is None or event.type in self.only_types

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        async with self._sessions() as session:
            self.pending_while_delivering.append(len(await queries.pending_events(session, self.name, 10_000)))
        if self.failing:
            raise ConnectionError("the sink is down")
        self.delivered.append(list(events))

    @property
    def ids(self) -> list[int]:
        return [event.id for batch in self.delivered for event in batch]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def write_events(
    sessions: async_sessionmaker[AsyncSession], count: int, *, tenant_id: str = "default", type: str = "job.started"
) -> list[int]:
    """`count` events written at T0; their ids, in order."""
    rows = [
        {
            "event_key": f"{tenant_id}-{type}-{i}-{datetime.now(UTC).timestamp()}",
            "tenant_id": tenant_id,
            "job_id": f"job-{tenant_id}-{i}",
            "type": type,
            "payload": {"route": "fast", "n": i},
            "created_at": T0,
        }
        for i in range(count)
    ]
    async with sessions() as session, session.begin():
        await queries.insert_events(session, rows)
    async with sessions() as session:
        stmt = select(EventLog.id).where(col(EventLog.tenant_id) == tenant_id, col(EventLog.type) == type)
        return sorted(i for i in (await session.exec(stmt)).all() if i is not None)


async def exported_at(sessions: async_sessionmaker[AsyncSession], sink: SinkName) -> dict[int, datetime | None]:
    async with sessions() as session:
        rows = (await session.exec(select(EventLog).order_by(col(EventLog.id)))).all()
    return {row.id: getattr(row, f"{sink}_exported_at") for row in rows if row.id is not None}


def holder(sessions: async_sessionmaker[AsyncSession], *sinks: ScriptedSink, clock: Clock) -> ExportActivities:
    """Every exporter's flag on by default (as with their endpoints configured); no flag caching."""
    flags = FlagCache(sessions, defaults=default_flags(frozenset({"warehouse", "langfuse", "otlp"})), ttl_s=0)
    return ExportActivities(sessions, flags=flags, sinks=sinks, clock=clock)


async def export(
    activities: ExportActivities, sink: SinkName = "warehouse", *, batch_size: int = 10, max_age_s: float = 2.0
) -> ExportBatchOutput:
    input = ExportBatchInput(sink=sink, batch_size=batch_size, max_age_s=max_age_s)
    return await ActivityEnvironment().run(activities.export_batch, input)


def lag(sink: SinkName) -> float | None:
    return REGISTRY.get_sample_value("kintsugi_export_lag_seconds", {"sink": sink})


def exported_total(sink: SinkName) -> float:
    return REGISTRY.get_sample_value("kintsugi_exported_events_total", {"sink": sink}) or 0.0


async def test_a_due_batch_is_delivered_oldest_first_and_only_then_marked(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = await write_events(migrated_sessions, 3)
    sink, clock = ScriptedSink(migrated_sessions), Clock()
    clock.now = T0 + timedelta(seconds=5)
    before = exported_total("warehouse")

    result = await export(holder(migrated_sessions, sink, clock=clock))

    assert result == ExportBatchOutput(selected=3, sent=3, more=False, wait_s=0)
    assert sink.ids == ids
    assert sink.delivered[0][0].payload == {"route": "fast", "n": 0}
    assert sink.pending_while_delivering == [3]  # nothing was marked before the sink took the batch
    assert set((await exported_at(migrated_sessions, "warehouse")).values()) == {clock.now}
    # The other sinks' delivery state is their own.
    assert set((await exported_at(migrated_sessions, "langfuse")).values()) == {None}
    assert exported_total("warehouse") - before == 3
    assert lag("warehouse") == 0


async def test_a_small_young_batch_waits_for_its_oldest_row_to_come_of_age(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await write_events(migrated_sessions, 2)
    sink, clock = ScriptedSink(migrated_sessions), Clock()
    clock.now = T0 + timedelta(seconds=0.5)

    result = await export(holder(migrated_sessions, sink, clock=clock), max_age_s=2.0)

    assert result == ExportBatchOutput(selected=0, sent=0, more=False, wait_s=1.5)
    assert sink.delivered == []
    assert set((await exported_at(migrated_sessions, "warehouse")).values()) == {None}
    assert lag("warehouse") == 0.5


async def test_a_full_batch_goes_at_once_and_asks_for_another(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = await write_events(migrated_sessions, 5)
    sink, clock = ScriptedSink(migrated_sessions), Clock()
    activities = holder(migrated_sessions, sink, clock=clock)

    first = await export(activities, batch_size=3)  # young, but a full batch
    clock.now = T0 + timedelta(seconds=3)
    second = await export(activities, batch_size=3)  # the rest, once the oldest is 2 s old

    assert (first.sent, first.more) == (3, True)
    assert (second.sent, second.more) == (2, False)
    assert sink.ids == ids


async def test_with_nothing_pending_it_waits_the_full_age_and_the_lag_is_zero(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    result = await export(holder(migrated_sessions, ScriptedSink(migrated_sessions), clock=Clock()), max_age_s=2.0)

    assert result == ExportBatchOutput(selected=0, sent=0, more=False, wait_s=2.0)
    assert lag("warehouse") == 0


async def test_a_tenant_with_the_flag_off_has_its_rows_marked_but_not_sent(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    sent_ids = await write_events(migrated_sessions, 2, tenant_id="default")
    held_ids = await write_events(migrated_sessions, 2, tenant_id="quiet")
    async with migrated_sessions() as session, session.begin():
        await queries.set_flag(
            session,
            key="enable_warehouse_export",
            tenant_id="quiet",
            enabled=False,
            rollout_percent=100,
            actor=Actor("default", None),
        )
    sink, clock = ScriptedSink(migrated_sessions), Clock()
    clock.now = T0 + timedelta(seconds=5)

    result = await export(holder(migrated_sessions, sink, clock=clock))

    assert (result.selected, result.sent) == (4, 2)
    assert sink.ids == sent_ids
    marked = await exported_at(migrated_sessions, "warehouse")
    assert all(marked[i] == clock.now for i in sent_ids + held_ids)


async def test_rows_the_sink_does_not_want_are_marked_without_being_sent(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    started = await write_events(migrated_sessions, 2, type="job.started")
    finished = await write_events(migrated_sessions, 1, type="job.succeeded")
    sink, clock = ScriptedSink(migrated_sessions, "otlp", only_types={"job.succeeded"}), Clock()
    clock.now = T0 + timedelta(seconds=5)

    result = await export(holder(migrated_sessions, sink, clock=clock), "otlp")

    assert (result.selected, result.sent) == (3, 1)
    assert sink.ids == finished
    marked = await exported_at(migrated_sessions, "otlp")
    assert all(marked[i] == clock.now for i in started + finished)


async def test_a_failing_sink_marks_nothing_and_the_retry_sends_every_row(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = await write_events(migrated_sessions, 4)
    sink, clock = ScriptedSink(migrated_sessions), Clock()
    clock.now = T0 + timedelta(seconds=7)
    activities = holder(migrated_sessions, sink, clock=clock)
    sink.failing = True

    with pytest.raises(ConnectionError):
        await export(activities)

    assert set((await exported_at(migrated_sessions, "warehouse")).values()) == {None}
    assert lag("warehouse") == 7  # the lag keeps its last reading: the rows are still waiting
    sink.failing = False
    result = await export(activities)
    assert result.sent == 4
    assert sink.ids == ids


async def test_a_sink_this_worker_lacks_fails_the_attempt_for_another_worker_to_take(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await write_events(migrated_sessions, 1)

    with pytest.raises(ApplicationError, match="no langfuse sink"):
        await export(holder(migrated_sessions, ScriptedSink(migrated_sessions), clock=Clock()), "langfuse")

    assert set((await exported_at(migrated_sessions, "langfuse")).values()) == {None}


class SlowSink(ScriptedSink):
    """Delivers only once the activity has heartbeated: a delivery longer than the heartbeat interval."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions)
        self.heartbeated = asyncio.Event()

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        await asyncio.wait_for(self.heartbeated.wait(), timeout=10)
        await super().deliver(events)


async def test_a_long_delivery_heartbeats(
    migrated_sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "HEARTBEAT_EVERY_S", 0.01)
    await write_events(migrated_sessions, 1)
    sink, clock = SlowSink(migrated_sessions), Clock()
    clock.now = T0 + timedelta(seconds=5)
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: sink.heartbeated.set()
    input = ExportBatchInput(sink="warehouse", batch_size=10, max_age_s=2.0)

    result = await env.run(holder(migrated_sessions, sink, clock=clock).export_batch, input)

    assert result.sent == 1
