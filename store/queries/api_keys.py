"""API keys: stored as hashes, found by plaintext, revoked within a tenant scope, bound to a policy."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from schemas.audit import KEY_BIND_POLICY, Actor
from schemas.tenants import Role, TenantScope, in_scope
from store.models import ApiKey, utcnow
from store.queries.audit import insert_audit

KEY_PREFIX = "ks_"


def hash_key(plaintext: str) -> str:
    """sha256 hex of an API key; keys are 256-bit random, so an unsalted fast hash is safe to look up by."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


async def create_api_key(
    session: AsyncSession, *, tenant_id: str, role: Role, name: str | None, policy_id: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key for `tenant_id` (bound to `policy_id`, a policy of that tenant the caller has checked; the
    caller audits the binding with `bind_key_policy`'s record). Only its hash is stored.

    Returns:
        The row and the plaintext key, which cannot be recovered later.
    """
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        tenant_id=tenant_id,
        role=role,
        name=name,
        key_hash=hash_key(plaintext),
        prefix=plaintext[:8],
        policy_id=policy_id,
    )
    session.add(key)
    await session.flush()
    return key, plaintext


async def find_api_key(session: AsyncSession, plaintext: str) -> ApiKey | None:
    """The live (not revoked) key whose hash matches `plaintext`, if any."""
    stmt = select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext), col(ApiKey.revoked_at).is_(None))
    return (await session.exec(stmt)).first()


async def revoke_api_key(session: AsyncSession, key_id: str, scope: TenantScope) -> bool:
    """Revoke a key of a tenant within `scope`.

    Returns:
        False if no such live key exists (unknown, outside the scope, or already revoked).
    """
    key = await session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None or not in_scope(scope, key.tenant_id):
        return False
    key.revoked_at = utcnow()
    session.add(key)
    await session.flush()
    return True


async def live_key(session: AsyncSession, key_id: str, scope: TenantScope) -> ApiKey | None:
    """The key, if it exists, is not revoked and its tenant is within `scope`."""
    if "\x00" in key_id:  # no id holds a NUL, and PostgreSQL refuses to compare text with one
        return None
    key = await session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None or not in_scope(scope, key.tenant_id):
        return None
    return key


async def bind_key_policy(session: AsyncSession, key: ApiKey, *, policy_id: str | None, actor: Actor) -> ApiKey:
    """Make `key` run under `policy_id` (a policy of its tenant the caller has checked), or under its tenant's
    default with None; audited as `key.bind_policy` when it changes anything."""
    before = key.policy_id
    if before == policy_id:
        return key
    key.policy_id = policy_id
    session.add(key)
    await session.flush()
    await record_key_binding(session, key, before=before, actor=actor)
    return key


async def record_key_binding(session: AsyncSession, key: ApiKey, *, before: str | None, actor: Actor) -> None:
    """The audit row of a binding change: `{policy_id}` before and after, None where the key named none."""
    await insert_audit(
        session,
        tenant_id=key.tenant_id,
        actor=actor,
        action=KEY_BIND_POLICY,
        target=key.id,
        before={"policy_id": before} if before else None,
        after={"policy_id": key.policy_id} if key.policy_id else None,
    )
