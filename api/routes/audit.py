"""The audit log: who changed what, newest first.

A tenant's admin sees its tenant's entries and the global flag changes (they change its tenant too); the
platform admin sees every entry.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminDep, SessionDep
from domain.errors import InvalidCursor
from domain.pagination import decode_cursor, encode_cursor
from schemas.audit import AuditEntry, AuditList
from store import queries
from store.models import GLOBAL_SCOPE, AuditLog

router = APIRouter(prefix="/v1/audit", tags=["audit"])


MAX_AUDIT_ID = 2**31 - 1
"""The largest id `audit_log.id` holds: an INTEGER column (migration 0003), 32 bits on PostgreSQL. A cursor
past it was not handed out here, and the database would refuse to compare the column with it."""


def _before_id(cursor: str | None) -> int | None:
    token = decode_cursor(cursor)
    if token is None:
        return None
    text = token.decode("ascii", errors="replace")
    if not text.isdigit() or not 0 < int(text) <= MAX_AUDIT_ID:
        raise InvalidCursor
    return int(text)


def _entry(row: AuditLog) -> AuditEntry:
    data = row.model_dump(include=set(AuditEntry.model_fields))
    return AuditEntry(**{**data, "tenant_id": row.tenant_id if row.tenant_id != GLOBAL_SCOPE else None})


@router.get("", response_model=AuditList)
async def list_audit(
    principal: AdminDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditList:
    before_id = _before_id(cursor)
    async with session.begin():
        page = await queries.audit_page(session, tenant_scope=principal.scope, limit=limit, before_id=before_id)
    next_cursor = encode_cursor(str(page.next_before_id).encode()) if page.next_before_id is not None else None
    return AuditList(data=[_entry(row) for row in page.rows], next_cursor=next_cursor)
