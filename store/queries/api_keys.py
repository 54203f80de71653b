"""API keys: stored as hashes, found by plaintext, revoked within a tenant scope."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from schemas.tenants import Role, TenantScope, in_scope
from store.models import ApiKey, utcnow

KEY_PREFIX = "ks_"


def hash_key(plaintext: str) -> str:
    """sha256 hex of an API key; keys are 256-bit random, so an unsalted fast hash is safe to look up by."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


async def create_api_key(session: AsyncSession, *, tenant_id: str, role: Role, name: str | None) -> tuple[ApiKey, str]:
    """Create a key for `tenant_id`. Only its hash is stored.

    Returns:
        The row and the plaintext key, which cannot be recovered later.
    """
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(tenant_id=tenant_id, role=role, name=name, key_hash=hash_key(plaintext), prefix=plaintext[:8])
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
