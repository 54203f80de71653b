"""Feature flags: read a tenant's values, set or drop the global value or a tenant's override.

Who may set what: the platform admin sets the global value (no `tenant_id`) or any tenant's override; a
tenant's admin keys set their own tenant's override only. Naming another tenant answers 404
`tenant_not_found`, as the key API does, so a tenant cannot learn which other tenants exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import Principal, tenant_in_scope
from api.deps import AdminDep, SessionDep, TenantQuery, ViewerDep
from domain.flags import FlagValue, flag_spec, global_value, resolve_flags
from schemas.audit import Actor
from schemas.flags import FlagList, FlagPublic, FlagUpdate
from schemas.tenants import ALL_TENANTS
from store import queries
from store.flag_cache import FlagCache
from store.models import GLOBAL_SCOPE, FeatureFlag

router = APIRouter(prefix="/v1/flags", tags=["flags"])


async def get_flag_cache(request: Request) -> FlagCache:
    return request.app.state.flags  # type: ignore[no-any-return]


FlagCacheDep = Annotated[FlagCache, Depends(get_flag_cache)]


def _public(value: FlagValue) -> FlagPublic:
    spec = flag_spec(value.key)
    return FlagPublic(
        key=value.key,
        enabled=value.enabled,
        source=value.source,
        rollout_percent=value.rollout_percent,
        description=spec.description,
        built=spec.built,
    )


async def _write_scope(session: AsyncSession, principal: Principal, tenant_id: str | None) -> str:
    # Only the platform admin has a global scope to write; everyone else's default is their own tenant.
    if tenant_id is None and principal.scope is ALL_TENANTS:
        return GLOBAL_SCOPE
    return await tenant_in_scope(session, principal, tenant_id)


def _answer(rows: list[FeatureFlag], key: str, scope: str, flags: FlagCache) -> FlagPublic:
    """The flag as it now stands for `scope`: a tenant's resolved value, or the global value itself (before
    tenants' overrides and rollout shares)."""
    if scope == GLOBAL_SCOPE:
        return _public(global_value(rows, key, flags.defaults))
    return _public(resolve_flags(rows, scope, flags.defaults)[key])


@router.get("", response_model=FlagList)
async def list_flags(
    principal: ViewerDep, session: SessionDep, flags: FlagCacheDep, tenant_id: TenantQuery = None
) -> FlagList:
    """Every flag for the caller's tenant (the platform admin may name any with `tenant_id`), as this
    process enforces it."""
    tenant = await tenant_in_scope(session, principal, tenant_id)
    values = await flags.for_tenant(tenant)
    return FlagList(data=[_public(value) for value in values.values()])


@router.put("/{key}", response_model=FlagPublic)
async def put_flag(
    key: str, body: FlagUpdate, principal: AdminDep, session: SessionDep, flags: FlagCacheDep
) -> FlagPublic:
    flag_spec(key)  # an unknown key is a 404 before anything is written
    async with session.begin():
        scope = await _write_scope(session, principal, body.tenant_id)
        await queries.set_flag(
            session,
            key=key,
            tenant_id=scope,
            enabled=body.enabled,
            rollout_percent=body.rollout_percent,
            actor=Actor(principal.tenant_id, principal.key_id),
        )
        rows = await queries.flag_rows(session)
    flags.invalidate()  # after the commit: a read now sees the change
    return _answer(rows, key, scope, flags)


@router.delete("/{key}", response_model=FlagPublic)
async def delete_flag(
    key: str, principal: AdminDep, session: SessionDep, flags: FlagCacheDep, tenant_id: TenantQuery = None
) -> FlagPublic:
    """Drop a scope's row: a tenant falls back to the global value, the global value to the default. Dropping
    a row that is not there changes nothing and answers the flag as it stands."""
    flag_spec(key)
    async with session.begin():
        scope = await _write_scope(session, principal, tenant_id)
        await queries.delete_flag(session, key=key, tenant_id=scope, actor=Actor(principal.tenant_id, principal.key_id))
        rows = await queries.flag_rows(session)
    flags.invalidate()
    return _answer(rows, key, scope, flags)
