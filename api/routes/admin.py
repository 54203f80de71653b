"""Admin: tenants and their API keys."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.auth import tenant_in_scope
from api.deps import AdminDep, SessionDep
from api.errors import ApiError
from schemas.tenants import ALL_TENANTS, KeyCreate, KeyCreated, TenantCreate, TenantPublic
from store import queries

router = APIRouter(prefix="/v1", tags=["admin"])


@router.post("/tenants", status_code=201, response_model=TenantPublic)
async def create_tenant(body: TenantCreate, principal: AdminDep, session: SessionDep) -> TenantPublic:
    if principal.scope is not ALL_TENANTS:
        raise ApiError(403, "forbidden", "only the platform admin key creates tenants")
    async with session.begin():
        tenant = await queries.create_tenant(session, body.name)
    return TenantPublic.model_validate(tenant, from_attributes=True)


@router.post("/keys", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyCreate, principal: AdminDep, session: SessionDep) -> KeyCreated:
    async with session.begin():
        tenant = await tenant_in_scope(session, principal, body.tenant_id)
        key, plaintext = await queries.create_api_key(session, tenant_id=tenant, role=body.role, name=body.name)
    return KeyCreated(**key.model_dump(include=set(KeyCreated.model_fields) - {"key"}), key=plaintext)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, principal: AdminDep, session: SessionDep) -> Response:
    async with session.begin():
        revoked = await queries.revoke_api_key(session, key_id, principal.scope)
    if not revoked:
        raise ApiError(404, "key_not_found", f"no active key {key_id}")
    return Response(status_code=204)
