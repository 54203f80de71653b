"""`event_logs`: the outbox of lifecycle events, each written once by its key, and each sink's delivery state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Mapped
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from schemas.exports import SinkName
from store.models import EventLog
from store.queries._inserts import insert_new, table_of

_EXPORTED_AT: dict[SinkName, Mapped[datetime | None]] = {
    "warehouse": col(EventLog.warehouse_exported_at),
    "langfuse": col(EventLog.langfuse_exported_at),
    "otlp": col(EventLog.otlp_exported_at),
}
"""Each sink's delivery column: NULL until the sink accepted the row (or the row was not for it)."""


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Append events to the outbox, skipping any whose `event_key` is already there.

    Each row has `event_key`, `tenant_id`, `job_id`, `type`, `payload` and `created_at`.

    Returns:
        The `event_key`s of the rows written (a repeat is not among them).
    """
    return await insert_new(session, table_of(EventLog), rows, "event_key")


async def events_for_job(session: AsyncSession, job_id: str, tenant_id: str) -> list[EventLog]:
    stmt = select(EventLog).where(EventLog.job_id == job_id, EventLog.tenant_id == tenant_id).order_by(col(EventLog.id))
    return list((await session.exec(stmt)).all())


async def pending_events(session: AsyncSession, sink: SinkName, limit: int) -> list[EventLog]:
    """Up to `limit` rows `sink` has not yet taken, oldest first (by id: the order they were written in, which
    `ix_event_logs_pending_<sink>` serves without a sort)."""
    stmt = select(EventLog).where(_EXPORTED_AT[sink].is_(None)).order_by(col(EventLog.id)).limit(limit)
    return list((await session.exec(stmt)).all())


async def oldest_pending(session: AsyncSession, sink: SinkName) -> datetime | None:
    """When the oldest row `sink` has not yet taken was written; None when it has taken every row."""
    stmt = select(EventLog.created_at).where(_EXPORTED_AT[sink].is_(None)).order_by(col(EventLog.id)).limit(1)
    return (await session.exec(stmt)).first()


async def mark_exported(session: AsyncSession, sink: SinkName, ids: Sequence[int], at: datetime) -> int:
    """Record that `sink` has taken the rows `ids` at `at`; a row it had already taken keeps its first time.

    Returns:
        The number of rows marked now.
    """
    if not ids:
        return 0
    column = _EXPORTED_AT[sink]
    stmt = update(EventLog).where(col(EventLog.id).in_(ids), column.is_(None)).values({column: at})
    result = await session.exec(stmt)
    return int(result.rowcount)
