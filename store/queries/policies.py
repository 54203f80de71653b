"""`policies` and `policy_versions`: versioned documents, one default per tenant, every change audited.

Every write first locks its tenant's row (`_lock_tenant`), so a tenant's policy writes run one at a time on
PostgreSQL (SQLite serialises writers anyway): two admins cannot both make "their" policy the default, nor
write the same version number, and the `before` of each audit row is what the previous writer left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from schemas.audit import POLICY_CREATE, POLICY_DELETE, POLICY_UPDATE, Actor
from schemas.tenants import TenantScope, in_scope
from store.models import ApiKey, Policy, PolicyVersion, Tenant, utcnow
from store.queries.audit import insert_audit


class PolicyNameTaken(Exception):
    """The tenant already has a policy of that name (names are unique per tenant)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a policy named {name!r} already exists")
        self.name = name


@dataclass(frozen=True)
class PolicyPage:
    rows: list[Policy]
    next_after: str | None
    """The last name of this page, to pass as `after` for the next one; None on the last page."""


def policy_setting(policy: Policy) -> dict[str, Any]:
    """What the audit log records of a policy, before and after a change."""
    return {"name": policy.name, "default": policy.is_default, "version": policy.version, "document": policy.document}


async def _lock_tenant(session: AsyncSession, tenant_id: str) -> None:
    # FOR UPDATE on the tenant row (PostgreSQL; SQLite ignores it): the one lock every policy write of the
    # tenant takes first, so they queue instead of interleaving, and always in the same order (no deadlock).
    await session.exec(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


async def _clear_other_defaults(session: AsyncSession, *, tenant_id: str, keep: str, actor: Actor) -> None:
    """Unset the tenant's other default (at most one), audited as that policy's update."""
    stmt = select(Policy).where(Policy.tenant_id == tenant_id, col(Policy.is_default).is_(True), Policy.id != keep)
    for other in (await session.exec(stmt)).all():
        before = policy_setting(other)
        other.is_default = False
        other.updated_at = utcnow()
        session.add(other)
        await session.flush()
        await insert_audit(
            session,
            tenant_id=tenant_id,
            actor=actor,
            action=POLICY_UPDATE,
            target=other.id,
            before=before,
            after=policy_setting(other),
        )


async def get_policy(session: AsyncSession, policy_id: str, scope: TenantScope) -> Policy | None:
    """The policy, if it exists and its tenant is within `scope` (another tenant's reads as missing)."""
    if "\x00" in policy_id:  # no id holds a NUL, and PostgreSQL refuses to compare text with one
        return None
    policy = await session.get(Policy, policy_id)
    if policy is None or not in_scope(scope, policy.tenant_id):
        return None
    return policy


async def policy_page(session: AsyncSession, *, tenant_id: str, limit: int, after: str | None) -> PolicyPage:
    """Up to `limit` of the tenant's policies by name, those after `after`.

    Keyset pagination on the name (unique within a tenant): a page does not shift when policies are added.
    """
    stmt = select(Policy).where(Policy.tenant_id == tenant_id)
    if after is not None:
        stmt = stmt.where(col(Policy.name) > after)
    # One row more than asked tells whether another page exists without a COUNT.
    rows = list((await session.exec(stmt.order_by(col(Policy.name)).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return PolicyPage(rows=rows, next_after=rows[-1].name if more and rows else None)


async def policy_versions(session: AsyncSession, policy_id: str) -> list[PolicyVersion]:
    """Every version of the policy, newest first."""
    stmt = select(PolicyVersion).where(PolicyVersion.policy_id == policy_id)
    return list((await session.exec(stmt.order_by(col(PolicyVersion.version).desc()))).all())


async def create_policy(
    session: AsyncSession, *, tenant_id: str, name: str, document: dict[str, Any], default: bool, actor: Actor
) -> Policy:
    """Version 1 of a new policy (and the tenant's default if `default`), audited as `policy.create`.

    `document` is stored as given: the caller has validated it.

    Raises:
        PolicyNameTaken: the tenant has a policy of that name.
    """
    await _lock_tenant(session, tenant_id)
    taken = await session.exec(select(Policy.id).where(Policy.tenant_id == tenant_id, Policy.name == name))
    if taken.first() is not None:
        raise PolicyNameTaken(name)
    policy = Policy(tenant_id=tenant_id, name=name, is_default=default, version=1, document=document)
    session.add(policy)
    await session.flush()
    session.add(PolicyVersion(policy_id=policy.id, version=1, document=document, created_by=actor.key_id))
    if default:
        await _clear_other_defaults(session, tenant_id=tenant_id, keep=policy.id, actor=actor)
    await session.flush()
    await insert_audit(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action=POLICY_CREATE,
        target=policy.id,
        before=None,
        after=policy_setting(policy),
    )
    return policy


async def _locked(session: AsyncSession, policy_id: str, scope: TenantScope) -> Policy | None:
    """The policy as it stands once its tenant is locked: read, lock, read again (it may have changed or gone
    while this transaction waited for the lock)."""
    found = await get_policy(session, policy_id, scope)
    if found is None:
        return None
    await _lock_tenant(session, found.tenant_id)
    stmt = select(Policy).where(Policy.id == policy_id).execution_options(populate_existing=True)
    return (await session.exec(stmt)).first()


async def update_policy(
    session: AsyncSession,
    *,
    policy_id: str,
    scope: TenantScope,
    document: dict[str, Any],
    default: bool | None,
    actor: Actor,
) -> Policy | None:
    """Write version n+1 with `document` (validated by the caller); `default` True makes it the tenant's
    default, False unsets it, None leaves it. Audited as `policy.update`.

    Returns:
        None when there is no such policy within `scope`.
    """
    policy = await _locked(session, policy_id, scope)
    if policy is None:
        return None
    before = policy_setting(policy)
    policy.version += 1
    policy.document = document
    policy.updated_at = utcnow()
    if default is not None:
        policy.is_default = default
    session.add(policy)
    session.add(PolicyVersion(policy_id=policy.id, version=policy.version, document=document, created_by=actor.key_id))
    await session.flush()
    if default:
        await _clear_other_defaults(session, tenant_id=policy.tenant_id, keep=policy.id, actor=actor)
    await insert_audit(
        session,
        tenant_id=policy.tenant_id,
        actor=actor,
        action=POLICY_UPDATE,
        target=policy.id,
        before=before,
        after=policy_setting(policy),
    )
    return policy


async def delete_policy(session: AsyncSession, *, policy_id: str, scope: TenantScope, actor: Actor) -> Policy | None:
    """Drop the policy and its versions; keys bound to it fall back to the tenant's default (their
    `policy_id` cleared in the same transaction). Audited as `policy.delete`, with the keys it unbound.

    Returns:
        The deleted row, or None when there is no such policy within `scope`.
    """
    policy = await _locked(session, policy_id, scope)
    if policy is None:
        return None
    bound = await session.exec(select(ApiKey.id).where(ApiKey.policy_id == policy.id).order_by(col(ApiKey.id)))
    unbound = list(bound.all())
    await session.exec(update(ApiKey).where(col(ApiKey.policy_id) == policy.id).values(policy_id=None))
    await session.exec(delete(PolicyVersion).where(col(PolicyVersion.policy_id) == policy.id))
    await session.delete(policy)
    await session.flush()
    await insert_audit(
        session,
        tenant_id=policy.tenant_id,
        actor=actor,
        action=POLICY_DELETE,
        target=policy.id,
        before={**policy_setting(policy), "bound_keys": unbound},
        after=None,
    )
    return policy


async def lock_policy_of_tenant(session: AsyncSession, policy_id: str, tenant_id: str) -> Policy | None:
    """For binding a key: the policy, if it is one of `tenant_id`'s, with the tenant locked so that a delete
    cannot slip in between this check and the binding's write (and leave the key bound to nothing)."""
    await _lock_tenant(session, tenant_id)
    return await get_policy(session, policy_id, tenant_id)
