"""The outbox queries on SQLite and PostgreSQL: each sink's pending rows and delivery marks are its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker

from store import queries
from store.engine import AsyncSession

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def _write(sessions: async_sessionmaker[AsyncSession], count: int) -> list[int]:
    rows = [
        {
            "event_key": f"k{i}",
            "tenant_id": "default",
            "job_id": f"j{i}",
            "type": "job.started",
            "payload": {},
            "created_at": T0 + timedelta(seconds=i),
        }
        for i in range(count)
    ]
    async with sessions() as session, session.begin():
        await queries.insert_events(session, rows)
        pending = await queries.pending_events(session, "warehouse", 100)
    return [row.id for row in pending if row.id is not None]


async def test_pending_rows_come_oldest_first_per_sink_until_marked(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _write(migrated_sessions, 4)
    at = T0 + timedelta(minutes=1)

    async with migrated_sessions() as session, session.begin():
        marked = await queries.mark_exported(session, "warehouse", ids[:2], at)
        warehouse = await queries.pending_events(session, "warehouse", 100)
        langfuse = await queries.pending_events(session, "langfuse", 3)
        oldest = await queries.oldest_pending(session, "warehouse")

    assert marked == 2
    assert [row.id for row in warehouse] == ids[2:]
    assert [row.id for row in langfuse] == ids[:3]
    assert oldest == T0 + timedelta(seconds=2)


async def test_a_row_marked_again_keeps_its_first_delivery_time(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _write(migrated_sessions, 1)

    async with migrated_sessions() as session, session.begin():
        first = await queries.mark_exported(session, "otlp", ids, T0)
        again = await queries.mark_exported(session, "otlp", ids, T0 + timedelta(hours=1))
        oldest = await queries.oldest_pending(session, "otlp")
        rows = await queries.events_for_job(session, "j0", "default")

    assert (first, again, oldest) == (1, 0, None)
    assert rows[0].otlp_exported_at == T0
