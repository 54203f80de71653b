"""Spend: what a tenant's model calls cost, per route, model, key or day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, ViewerDep
from api.errors import ApiError
from schemas.costs import CostGroupBy, CostReport
from schemas.tenants import in_scope
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
    tenant_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> CostReport:
    """The tenant's spend from `from` (inclusive) to `to` (exclusive), ISO 8601 dates or datetimes (UTC unless
    they name an offset); by default the 30 days up to now. Rows without a key id (the environment's admin
    key) group as `(admin)`, rows without a route as `(unknown)`. Only the platform admin may name another
    tenant (`tenant_id`); for anyone else another tenant does not exist."""
    end = _utc(end) if end is not None else datetime.now(UTC)
    start = _utc(start) if start is not None else end - DEFAULT_WINDOW
    if start > end:
        problem = {"loc": ["query", "from"], "message": "must not be after `to`", "type": "value_error"}
        raise ApiError(422, "validation_error", "from: must not be after `to`", {"errors": [problem]})
    tenant = tenant_id or principal.tenant_id
    async with session.begin():
        if tenant != principal.tenant_id and (
            not in_scope(principal.scope, tenant) or await queries.get_tenant(session, tenant) is None
        ):
            raise ApiError(404, "tenant_not_found", f"no tenant {tenant}")
        return await queries.cost_report(session, tenant_id=tenant, group_by=group_by, start=start, end=end)


def _utc(moment: datetime) -> datetime:
    # A date or a datetime without an offset is read as UTC, the zone the report's days are cut in.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
