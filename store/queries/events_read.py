"""`event_logs` as `GET /v1/events` reads it: one tenant's events, filtered, newest first, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import EventLog

_LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class EventPage:
    rows: list[EventLog]
    next_before_id: int | None
    """Pass as `before_id` for the next page; None on the last page."""


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2).replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


async def event_page(
    session: AsyncSession,
    *,
    tenant_id: str,
    limit: int,
    before_id: int | None = None,
    type: str | None = None,
    job_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> EventPage:
    """Up to `limit` of the tenant's events with ids below `before_id`, newest first.

    `type` is one event type (`job.failed`), or, ending in `.`, every type under it (`job.`); `start` is
    inclusive and `end` exclusive, on the time the event happened.

    Keyset pagination on the id (which grows with each insert): a page does not shift when events are added.
    """
    stmt = select(EventLog).where(col(EventLog.tenant_id) == tenant_id)
    if type is not None:
        if type.endswith("."):
            stmt = stmt.where(col(EventLog.type).like(_like_prefix(type), escape=_LIKE_ESCAPE))
        else:
            stmt = stmt.where(col(EventLog.type) == type)
    if job_id is not None:
        stmt = stmt.where(col(EventLog.job_id) == job_id)
    if start is not None:
        stmt = stmt.where(col(EventLog.created_at) >= start)
    if end is not None:
        stmt = stmt.where(col(EventLog.created_at) < end)
    if before_id is not None:
        stmt = stmt.where(col(EventLog.id) < before_id)
    # One row more than asked tells whether another page exists without a COUNT.
    rows = list((await session.exec(stmt.order_by(col(EventLog.id).desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return EventPage(rows=rows, next_before_id=rows[-1].id if more and rows else None)
