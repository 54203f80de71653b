"""A job's trace: its workflow history as a span tree, with what each call cost."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, TemporalDep, ViewerDep
from client import job_client
from domain.traces.build import attach_costs, build_trace
from schemas.traces import BilledCall, Trace
from store import queries

router = APIRouter(prefix="/v1/jobs", tags=["traces"])


@router.get("/{job_id}/trace", response_model=Trace)
async def get_trace(job_id: str, principal: ViewerDep, temporal: TemporalDep, session: SessionDep) -> Trace:
    handle, _ = await job_client.describe_job(temporal, principal.tenant_id, job_id)
    trace = build_trace(job_id, await job_client.job_history(handle))
    async with session.begin():
        rows = await queries.cost_logs_for_job(session, job_id, principal.tenant_id)
    return attach_costs(trace, [BilledCall.model_validate(row, from_attributes=True) for row in rows])
