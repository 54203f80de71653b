"""Tenants."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import Tenant


async def create_tenant(session: AsyncSession, name: str) -> Tenant:
    tenant = Tenant(name=name)
    session.add(tenant)
    await session.flush()
    return tenant


async def get_tenant(session: AsyncSession, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)
