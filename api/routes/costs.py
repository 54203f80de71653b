"""Spend: what a tenant's model calls cost, per route, model, key or day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import tenant_in_scope
from api.deps import SessionDep, TenantQuery, ViewerDep
from api.errors import ApiError
from domain.times import as_utc
from schemas.costs import CostGroupBy, CostReport
from store import queries

router = APIRouter(prefix="/v1", tags=["costs"])

DEFAULT_WINDOW = timedelta(days=30)


@router.get("/costs", response_model=CostReport)
async def get_costs(
    principal: ViewerDep,
    session: SessionDep,
    group_by: CostGroupBy = "day",
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    tenant_id: TenantQuery = None,
) -> CostReport:
    """The tenant's spend from `from` (inclusive) to `to` (exclusive), ISO 8601 dates or datetimes (UTC unless
    they name an offset); by default the 30 days up to now. Rows without a key id (the environment's admin
    key) group as `(admin)`, rows without a route as `(unknown)`. Only the platform admin may name another
    tenant (`tenant_id`); for anyone else another tenant does not exist."""
    end = _utc(end, "to") if end is not None else datetime.now(UTC)
    start = _utc(start, "from") if start is not None else _default_start(end)
    if start > end:
        raise _invalid("from", "must not be after `to`")
    async with session.begin():
        tenant = await tenant_in_scope(session, principal, tenant_id)
        return await queries.cost_report(session, tenant_id=tenant, group_by=group_by, start=start, end=end)


def _utc(moment: datetime, param: str) -> datetime:
    # A date or a datetime without an offset is read as UTC, the zone the report's days are cut in.
    try:
        return as_utc(moment)
    except ValueError as err:
        raise _invalid(param, str(err)) from None


def _default_start(end: datetime) -> datetime:
    try:
        return end - DEFAULT_WINDOW
    except OverflowError:
        raise _invalid("to", "the default window, 30 days before `to`, starts before year 1: give `from`") from None


def _invalid(param: str, message: str) -> ApiError:
    """A 422 shaped as FastAPI's own validation errors, for what only the route can check."""
    problem = {"loc": ["query", param], "message": message, "type": "value_error"}
    return ApiError(422, "validation_error", f"{param}: {message}", {"errors": [problem]})
