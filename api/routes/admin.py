"""Admin: tenants and their API keys (and the policy a key runs under)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import Principal, tenant_in_scope
from api.deps import AdminDep, SessionDep
from api.errors import ApiError
from schemas.audit import Actor
from schemas.tenants import ALL_TENANTS, KeyCreate, KeyCreated, KeyPolicyUpdate, KeyPublic, TenantCreate, TenantPublic
from store import queries
from store.policy_cache import PolicyCache
from store.queries import api_keys as key_queries
from store.queries.policies import lock_policy_of_tenant

router = APIRouter(prefix="/v1", tags=["admin"])


@router.post("/tenants", status_code=201, response_model=TenantPublic)
async def create_tenant(body: TenantCreate, principal: AdminDep, session: SessionDep) -> TenantPublic:
    if principal.scope is not ALL_TENANTS:
        raise ApiError(403, "forbidden", "only the platform admin key creates tenants")
    async with session.begin():
        tenant = await queries.create_tenant(session, body.name)
    return TenantPublic.model_validate(tenant, from_attributes=True)


async def _policy_of_tenant(session: AsyncSession, policy_id: str, tenant_id: str) -> None:
    """Refuses a policy that is not one of the key's tenant's, as one that does not exist."""
    if await lock_policy_of_tenant(session, policy_id, tenant_id) is None:
        raise ApiError(404, "policy_not_found", f"no policy {policy_id}")


def _actor(principal: Principal) -> Actor:
    return Actor(principal.tenant_id, principal.key_id)


@router.post("/keys", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyCreate, principal: AdminDep, session: SessionDep, request: Request) -> KeyCreated:
    async with session.begin():
        tenant = await tenant_in_scope(session, principal, body.tenant_id)
        if body.policy_id is not None:
            await _policy_of_tenant(session, body.policy_id, tenant)
        key, plaintext = await queries.create_api_key(
            session, tenant_id=tenant, role=body.role, name=body.name, policy_id=body.policy_id
        )
        if key.policy_id is not None:
            await key_queries.record_key_binding(session, key, before=None, actor=_actor(principal))
    if key.policy_id is not None:
        _policies(request).invalidate()  # the new key runs under its policy from its first request
    return KeyCreated(**key.model_dump(include=set(KeyCreated.model_fields) - {"key"}), key=plaintext)


@router.put("/keys/{key_id}/policy", response_model=KeyPublic)
async def bind_key_policy(
    key_id: str, body: KeyPolicyUpdate, principal: AdminDep, session: SessionDep, request: Request
) -> KeyPublic:
    """Bind a live key to a policy of its tenant, or (`policy_id: null`) back to the tenant's default."""
    async with session.begin():
        key = await key_queries.live_key(session, key_id, principal.scope)
        if key is None:
            raise ApiError(404, "key_not_found", f"no active key {key_id}")
        if body.policy_id is not None:
            await _policy_of_tenant(session, body.policy_id, key.tenant_id)
        key = await key_queries.bind_key_policy(session, key, policy_id=body.policy_id, actor=_actor(principal))
    _policies(request).invalidate()
    return KeyPublic.model_validate(key, from_attributes=True)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, principal: AdminDep, session: SessionDep) -> Response:
    async with session.begin():
        revoked = await queries.revoke_api_key(session, key_id, principal.scope)
    if not revoked:
        raise ApiError(404, "key_not_found", f"no active key {key_id}")
    return Response(status_code=204)


def _policies(request: Request) -> PolicyCache:
    return request.app.state.policies  # type: ignore[no-any-return]
