"""Who is calling: a bearer key resolved to a tenant and a role."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from api.errors import ApiError
from schemas.tenants import ALL_TENANTS, Role, TenantScope, in_scope
from store import queries

_RANK: dict[str, int] = {"viewer": 0, "app": 1, "admin": 2}


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    role: Role
    key_id: str | None
    """None for the admin key from the environment."""

    @property
    def scope(self) -> TenantScope:
        """The tenants this principal may administer: every tenant for the environment's admin key; a
        tenant's own admin keys stay inside their tenant."""
        return ALL_TENANTS if self.key_id is None and self.role == "admin" else self.tenant_id

    def require(self, role: Role) -> None:
        if _RANK[self.role] < _RANK[role]:
            raise ApiError(403, "forbidden", f"this needs the {role} role; the key has {self.role}")


async def tenant_in_scope(session: AsyncSession, principal: Principal, tenant_id: str | None) -> str:
    """The tenant a request names (the caller's own when it names none), if the caller may act on it.

    Raises:
        ApiError: 404 `tenant_not_found` for a tenant outside the caller's scope, as for one that does not
            exist: a tenant cannot learn which other tenants exist.
    """
    if tenant_id is None or tenant_id == principal.tenant_id:
        return principal.tenant_id  # a key's tenant exists: the key refers to it (the admin's is seeded)
    # No tenant id holds a NUL (PostgreSQL text cannot), and asking PostgreSQL for one fails the query.
    if (
        not in_scope(principal.scope, tenant_id)
        or "\x00" in tenant_id
        or await queries.get_tenant(session, tenant_id) is None
    ):
        raise ApiError(404, "tenant_not_found", f"no tenant {tenant_id}")
    return tenant_id


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise ApiError(401, "unauthorized", "missing Authorization: Bearer <key>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "the Authorization header must be `Bearer <key>`")
    return token.strip()


async def authenticate(sessions: async_sessionmaker[AsyncSession], token: str, *, admin_key: str) -> Principal:
    """The admin key (from the environment) acts on the built-in default tenant; other keys are looked up
    by hash."""
    if hmac.compare_digest(token.encode(), admin_key.encode()):
        return Principal(tenant_id=queries.DEFAULT_TENANT_ID, role="admin", key_id=None)
    async with sessions() as session:
        key = await queries.find_api_key(session, token)
    if key is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid")
    return Principal(tenant_id=key.tenant_id, role=key.role, key_id=key.id)
