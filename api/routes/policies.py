"""`/v1/policies`: a tenant's versioned policies (CRUD), their history, and the dry run (`/evaluate`).

Who may do what: any key reads its own tenant's policies (the platform admin any tenant's, with `tenant_id`);
a tenant's admin keys write their tenant's, the platform admin any tenant's. Another tenant's policy answers
404 `policy_not_found`, as one that does not exist. Every change is audited and in force in this process at
once (`PolicyCache.invalidate`), in the others within the cache's TTL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import State

from api.auth import Principal, tenant_in_scope
from api.deps import AdminDep, SessionDep, TenantQuery, ViewerDep
from api.errors import ApiError
from domain.errors import InvalidCursor
from domain.pagination import decode_cursor, encode_cursor
from domain.policy.evaluate import PolicyRequest, PolicyUsage, evaluate
from domain.routing import plan_route
from schemas.audit import Actor
from schemas.jobs import JobParams
from schemas.policies import (
    EvaluateRequestBody,
    PolicyCreate,
    PolicyDocument,
    PolicyEvaluate,
    PolicyEvaluation,
    PolicyList,
    PolicyPublic,
    PolicyUpdate,
    PolicyVersionList,
    PolicyVersionPublic,
)
from schemas.validation import describe, location
from store.models import Policy
from store.policy_cache import PolicyCache
from store.queries import policies as policy_queries
from store.queries.budgets import budget_usage

router = APIRouter(prefix="/v1/policies", tags=["policies"])


def public(policy: Policy) -> PolicyPublic:
    return PolicyPublic(
        id=policy.id,
        tenant_id=policy.tenant_id,
        name=policy.name,
        default=policy.is_default,
        version=policy.version,
        document=policy.document,
        created_at=policy.created_at,
        updated_at=policy.updated_at,
    )


def _problems(err: ValidationError, prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *(str(part) for part in e["loc"])], "message": e["msg"], "type": e["type"]}
        for e in err.errors()
    ]


def parse_document(raw: Mapping[str, Any]) -> PolicyDocument:
    """The document, validated.

    Raises:
        ApiError: 422 `invalid_policy`, its message naming the first offending path
            (`guardrails.input.pii.action: Input should be 'block', 'redact' or 'log'`).
    """
    try:
        return PolicyDocument.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise ApiError(
            422,
            "invalid_policy",
            describe(first),
            {"path": location(first["loc"]), "errors": _problems(err)},
        ) from err


def stored_document(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The document as stored: validated, then only what was written (so a version reads back as written)."""
    return parse_document(raw).model_dump(mode="json", exclude_unset=True, by_alias=True)


def check_name(name: str) -> str:
    if not name.strip() or "\x00" in name:  # PostgreSQL text cannot hold a NUL
        raise ApiError(422, "validation_error", "name: a policy name must be printable text, not blank")
    return name


def _policy_not_found(policy_id: str) -> ApiError:
    return ApiError(404, "policy_not_found", f"no policy {policy_id}")


def _actor(principal: Principal) -> Actor:
    return Actor(principal.tenant_id, principal.key_id)


def _cache(request: Request) -> PolicyCache:
    return request.app.state.policies  # type: ignore[no-any-return]


def _after(cursor: str | None) -> str | None:
    token = decode_cursor(cursor)
    if token is None:
        return None
    try:
        after = token.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidCursor from err
    if "\x00" in after:
        raise InvalidCursor
    return after


@router.get("", response_model=PolicyList)
async def list_policies(
    principal: ViewerDep,
    session: SessionDep,
    tenant_id: TenantQuery = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> PolicyList:
    """The tenant's policies by name."""
    after = _after(cursor)
    async with session.begin():
        tenant = await tenant_in_scope(session, principal, tenant_id)
        page = await policy_queries.policy_page(session, tenant_id=tenant, limit=limit, after=after)
    next_cursor = encode_cursor(page.next_after.encode()) if page.next_after is not None else None
    return PolicyList(data=[public(row) for row in page.rows], next_cursor=next_cursor)


@router.post("", status_code=201, response_model=PolicyPublic)
async def create_policy(body: PolicyCreate, principal: AdminDep, session: SessionDep, request: Request) -> PolicyPublic:
    document = stored_document(body.document)
    name = check_name(body.name)
    async with session.begin():
        tenant = await tenant_in_scope(session, principal, body.tenant_id)
        try:
            policy = await policy_queries.create_policy(
                session, tenant_id=tenant, name=name, document=document, default=body.default, actor=_actor(principal)
            )
        except policy_queries.PolicyNameTaken as err:
            raise ApiError(409, "policy_exists", str(err), {"name": err.name}) from err
    _cache(request).invalidate()  # after the commit: the next request of this process runs under it
    return public(policy)


@router.post("/evaluate", response_model=PolicyEvaluation)
async def evaluate_policy(
    body: PolicyEvaluate, principal: ViewerDep, session: SessionDep, request: Request
) -> PolicyEvaluation:
    """Dry run: the decision preflight would make about `request` under a stored policy or a draft document,
    with the tenant's flags and budget usage as they are now. Nothing is reserved, called or recorded."""
    async with session.begin():
        if body.policy_id is not None:
            policy = await policy_queries.get_policy(session, body.policy_id, principal.scope)
            if policy is None:
                raise _policy_not_found(body.policy_id)
            document, tenant = PolicyDocument.model_validate(policy.document), policy.tenant_id
        else:
            document, tenant = parse_document(body.document or {}), principal.tenant_id
        return await dry_run(request.app.state, session, tenant_id=tenant, document=document, body=body.request)


@router.get("/{policy_id}", response_model=PolicyPublic)
async def get_policy(policy_id: str, principal: ViewerDep, session: SessionDep) -> PolicyPublic:
    async with session.begin():
        policy = await policy_queries.get_policy(session, policy_id, principal.scope)
    if policy is None:
        raise _policy_not_found(policy_id)
    return public(policy)


@router.put("/{policy_id}", response_model=PolicyPublic)
async def update_policy(
    policy_id: str, body: PolicyUpdate, principal: AdminDep, session: SessionDep, request: Request
) -> PolicyPublic:
    """Version n+1: the document replaced whole; `default` true makes it the tenant's default."""
    document = stored_document(body.document)
    async with session.begin():
        policy = await policy_queries.update_policy(
            session,
            policy_id=policy_id,
            scope=principal.scope,
            document=document,
            default=body.default,
            actor=_actor(principal),
        )
        if policy is None:
            raise _policy_not_found(policy_id)
    _cache(request).invalidate()
    return public(policy)


@router.delete("/{policy_id}", status_code=204)
async def delete_policy(policy_id: str, principal: AdminDep, session: SessionDep, request: Request) -> Response:
    """Keys bound to it fall back to their tenant's default policy."""
    async with session.begin():
        deleted = await policy_queries.delete_policy(
            session, policy_id=policy_id, scope=principal.scope, actor=_actor(principal)
        )
        if deleted is None:
            raise _policy_not_found(policy_id)
    _cache(request).invalidate()
    return Response(status_code=204)


@router.get("/{policy_id}/versions", response_model=PolicyVersionList)
async def list_versions(policy_id: str, principal: ViewerDep, session: SessionDep) -> PolicyVersionList:
    """Every version, newest first."""
    async with session.begin():
        policy = await policy_queries.get_policy(session, policy_id, principal.scope)
        if policy is None:
            raise _policy_not_found(policy_id)
        versions = await policy_queries.policy_versions(session, policy.id)
    return PolicyVersionList(data=[PolicyVersionPublic.model_validate(row, from_attributes=True) for row in versions])


async def dry_run(
    state: State, session: AsyncSession, *, tenant_id: str, document: PolicyDocument, body: EvaluateRequestBody
) -> PolicyEvaluation:
    """`evaluate` on the request as preflight would see it: its route plan, the tenant's flags and budget usage.

    Raises:
        ApiError: 422 for parameters a job would refuse; domain errors (`unknown_model`, …) as a job gets them.
    """
    try:
        params = JobParams.model_validate(body.params)
    except ValidationError as err:
        first = err.errors()[0]
        message = describe({**first, "loc": ("request", "params", *first["loc"])})
        raise ApiError(422, "validation_error", message, {"errors": _problems(err, ("request", "params"))}) from err
    plan = plan_route(
        state.routes,
        body.model,
        kind="chat",
        params=params,
        messages=body.messages,
        local_call_max_s=state.settings.local_call_max_s,
        synchronous=True,
    )
    committed = await budget_usage(session, tenant_id=tenant_id, now=datetime.now(UTC))
    flags = await state.flags.enabled(tenant_id)
    request = PolicyRequest(model=body.model, messages=body.messages, params=params, plan=plan)
    decision = evaluate(document, request, PolicyUsage(committed_usd=committed), flags)
    refusal = decision.refusal
    return PolicyEvaluation(
        allowed=refusal is None,
        code=refusal.code if refusal else None,
        message=refusal.message if refusal else None,
        reasons=decision.reasons,
        redacted_messages=decision.redacted_messages if decision.redacted_messages is not None else body.messages,
        estimated_cost_usd=decision.estimated_cost_usd,
        guardrails=decision.guardrails,
        skipped=decision.skipped,
    )
