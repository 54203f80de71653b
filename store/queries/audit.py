"""`audit_log`: who changed what, newest first, within the reader's tenant scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from schemas.audit import FLAG_DELETE, FLAG_SET, Actor
from schemas.tenants import ALL_TENANTS, TenantScope
from store.models import GLOBAL_SCOPE, AuditLog

GLOBAL_ACTIONS_TENANTS_SEE = (FLAG_SET, FLAG_DELETE)
"""Platform-wide changes a tenant admin sees too: a global flag changes its own tenant's behaviour. Other
global rows (tenants created, say) may name other tenants, so they stay the platform admin's."""


async def insert_audit(
    session: AsyncSession,
    *,
    tenant_id: str,
    actor: Actor,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditLog:
    """Record one change, in the caller's transaction, so the change and its record commit together."""
    row = AuditLog(
        tenant_id=tenant_id,
        actor_tenant_id=actor.tenant_id,
        actor_key_id=actor.key_id,
        action=action,
        target=target,
        before=before,
        after=after,
    )
    session.add(row)
    await session.flush()
    return row


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditLog]
    next_before_id: int | None
    """Pass as `before_id` for the next page; None on the last page."""


def _visible(scope: TenantScope) -> ColumnElement[bool]:
    if scope is ALL_TENANTS:
        return col(AuditLog.id).is_not(None)
    shared = and_(col(AuditLog.tenant_id) == GLOBAL_SCOPE, col(AuditLog.action).in_(GLOBAL_ACTIONS_TENANTS_SEE))
    return or_(col(AuditLog.tenant_id) == scope, shared)


async def audit_page(
    session: AsyncSession, *, tenant_scope: TenantScope, limit: int, before_id: int | None
) -> AuditPage:
    """Up to `limit` rows visible to `tenant_scope`, newest first, with ids below `before_id`.

    Keyset pagination on the id (which grows with each insert): a page does not shift when rows are added.
    """
    stmt = select(AuditLog).where(_visible(tenant_scope))
    if before_id is not None:
        stmt = stmt.where(col(AuditLog.id) < before_id)
    # One row more than asked tells whether another page exists without a COUNT.
    rows = list((await session.exec(stmt.order_by(col(AuditLog.id).desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows=rows, next_before_id=rows[-1].id if more and rows else None)
