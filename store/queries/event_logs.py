"""`event_logs`: the outbox of lifecycle events, each written once by its key."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import EventLog
from store.queries._inserts import insert_ignoring_duplicates, table_of


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Append events to the outbox, skipping any whose `event_key` is already there.

    Each row has `event_key`, `tenant_id`, `job_id`, `type`, `payload` and `created_at`.

    Returns:
        The number of rows written.
    """
    return await insert_ignoring_duplicates(session, table_of(EventLog), rows, "event_key")


async def events_for_job(session: AsyncSession, job_id: str, tenant_id: str) -> list[EventLog]:
    stmt = select(EventLog).where(EventLog.job_id == job_id, EventLog.tenant_id == tenant_id).order_by(col(EventLog.id))
    return list((await session.exec(stmt)).all())
