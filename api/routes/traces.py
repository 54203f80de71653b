"""Jobs' traces: one job's span tree with what each call cost, the list of traces, and a trace's export as
JSON or as OTLP/JSON for an OpenTelemetry collector."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api.auth import tenant_in_scope
from api.deps import SessionDep, TemporalDep, TenantQuery, ViewerDep
from api.errors import ApiError
from client import job_client
from client.job_traces import load_trace
from domain.times import as_utc
from domain.traces.listing import trace_list_query, trace_summary
from domain.traces.otlp import trace_to_otlp
from schemas.jobs import JobStatus
from schemas.traces import Trace, TraceList

router = APIRouter(tags=["traces"])

ExportFormat = Literal["json", "otlp"]
_MODEL_NAME = r"^[A-Za-z0-9._:/@-]+$"
"""What a route name may hold (`domain.job_view.visibility_query` refuses anything else)."""
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


@router.get("/v1/jobs/{job_id}/trace", response_model=Trace)
async def get_trace(job_id: str, principal: ViewerDep, temporal: TemporalDep, request: Request) -> Trace:
    return await load_trace(temporal, request.app.state.sessions, principal.tenant_id, job_id)


@router.get("/v1/traces", response_model=TraceList)
async def list_traces(
    principal: ViewerDep,
    temporal: TemporalDep,
    session: SessionDep,
    status: JobStatus | None = None,
    model: Annotated[str | None, Query(min_length=1, max_length=200, pattern=_MODEL_NAME)] = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    tenant_id: TenantQuery = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=4000)] = None,
) -> TraceList:
    """The tenant's jobs' traces, newest first: by status, model and start time (`from` inclusive, `to`
    exclusive; ISO 8601, UTC unless they name an offset). Only the platform admin may name another `tenant_id`;
    for anyone else another tenant does not exist (404 `tenant_not_found`)."""
    start = _utc(start, "from") if start is not None else None
    end = _utc(end, "to") if end is not None else None
    if start is not None and end is not None and start > end:
        raise ApiError(422, "invalid_filter", "from: must not be after `to`")
    async with session.begin():
        tenant_id = await tenant_in_scope(session, principal, tenant_id)
    query = trace_list_query(tenant_id, status=status, model=model, start=start, end=end)
    executions, next_cursor = await job_client.list_page(temporal, query, limit=limit, cursor=cursor)
    return TraceList(data=[trace_summary(execution) for execution in executions], next_cursor=next_cursor)


@router.get("/v1/traces/{job_id}/export")
async def export_trace(
    job_id: str, principal: ViewerDep, temporal: TemporalDep, request: Request, format: ExportFormat = "json"
) -> Response:
    """The trace as a download: `json` is `GET /v1/jobs/{id}/trace`'s body; `otlp` is an OTLP/JSON
    `ExportTraceServiceRequest` to post to a collector's `/v1/traces`."""
    trace = await load_trace(temporal, request.app.state.sessions, principal.tenant_id, job_id)
    if format == "otlp":
        otlp = trace_to_otlp(trace, now=datetime.now(UTC))
        body = Response(content=json.dumps(otlp, separators=(",", ":")), media_type="application/json")
    else:
        body = Response(content=trace.model_dump_json(), media_type="application/json")
    filename = _UNSAFE_IN_FILENAME.sub("_", job_id)
    body.headers["Content-Disposition"] = f'attachment; filename="{filename}.{format}.json"'
    return body


def _utc(moment: datetime, param: str) -> datetime:
    try:
        return as_utc(moment)
    except ValueError as err:
        raise ApiError(422, "invalid_filter", f"{param}: {err}") from None
