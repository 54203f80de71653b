"""The event outbox as a list: a tenant's lifecycle events (`event_logs`), filtered, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from api.auth import tenant_in_scope
from api.deps import SessionDep, TenantQuery, ViewerDep
from domain.errors import InvalidCursor
from domain.pagination import decode_cursor, encode_cursor
from domain.times import as_utc
from schemas.reports import EventList, EventPublic
from store import queries
from store.models import EventLog

router = APIRouter(prefix="/v1/events", tags=["events"])

MAX_EVENT_ID = 2**31 - 1
"""The largest id `event_logs.id` holds (INTEGER, 32 bits on PostgreSQL): a larger cursor was not handed out
here, and the database would refuse to compare the column with it."""


_NO_NUL = r"^[^\x00]*$"
"""PostgreSQL text holds no NUL, and a query comparing a column with one fails: such a filter is a 422."""

UtcQuery = Annotated[datetime | None, AfterValidator(lambda m: None if m is None else as_utc(m))]


def _before_id(cursor: str | None) -> int | None:
    token = decode_cursor(cursor)
    if token is None:
        return None
    text = token.decode("ascii", errors="replace")
    if not text.isdigit() or not 0 < int(text) <= MAX_EVENT_ID:
        raise InvalidCursor
    return int(text)


def _public(row: EventLog) -> EventPublic:
    return EventPublic.model_validate(row.model_dump(include=set(EventPublic.model_fields)))


@router.get("", response_model=EventList)
async def list_events(
    principal: ViewerDep,
    session: SessionDep,
    type: Annotated[str | None, Query(min_length=1, max_length=100, pattern=_NO_NUL)] = None,
    job_id: Annotated[str | None, Query(min_length=1, max_length=255, pattern=_NO_NUL)] = None,
    start: Annotated[UtcQuery, Query(alias="from")] = None,
    end: Annotated[UtcQuery, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    tenant_id: TenantQuery = None,
) -> EventList:
    """`type`: one event type (`job.failed`), or a prefix ending in `.` for a family (`job.`). `from`
    (inclusive) and `to` (exclusive): when the event happened, ISO 8601, UTC unless an offset is given. Only the
    platform admin may name another tenant (`tenant_id`)."""
    before_id = _before_id(cursor)
    async with session.begin():
        tenant = await tenant_in_scope(session, principal, tenant_id)
        page = await queries.event_page(
            session,
            tenant_id=tenant,
            limit=limit,
            before_id=before_id,
            type=type,
            job_id=job_id,
            start=start,
            end=end,
        )
    next_cursor = encode_cursor(str(page.next_before_id).encode()) if page.next_before_id is not None else None
    return EventList(data=[_public(row) for row in page.rows], next_cursor=next_cursor)
