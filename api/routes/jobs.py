"""The job API: submit, read, list, cancel and repair jobs."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from api.deps import AppDep, RoutesDep, SettingsDep, TemporalDep, ViewerDep
from api.errors import ApiError
from api.rate_limits import admit
from client import job_client
from domain.rate_limits import job_tokens
from domain.routing import require_route
from schemas.jobs import Job, JobCreate, JobList, JobStatus, RepairInput

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+(?:\.\d+)?)")


def prefer_wait(prefer: str | None, max_wait_s: float) -> float | None:
    """Seconds from `Prefer: wait=N` (RFC 7240), capped; None when the caller did not ask to wait."""
    if not prefer:
        return None
    match = _PREFER_WAIT.search(prefer)
    return min(float(match.group(1)), max_wait_s) if match else None


@router.post("", status_code=202, response_model=Job)
async def submit_job(
    body: JobCreate,
    principal: AppDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    routes: RoutesDep,
    request: Request,
    response: Response,
    prefer: Annotated[str | None, Header()] = None,
) -> Job:
    require_route(routes, body.model, kind=body.kind, params=body.params, messages=body.messages)
    wait_s = prefer_wait(prefer, settings.max_wait_s)
    # What TPM was charged goes on the job: postflight settles the buckets with the real usage.
    charged_tokens = await admit(request, response, principal, route=body.model, tokens=job_tokens(body))
    handle = await job_client.start_job(
        temporal,
        settings,
        tenant_id=principal.tenant_id,
        key_id=principal.key_id,
        admitted_tokens=charged_tokens,
        request=body,
        synchronous=wait_s is not None,
    )
    if wait_s is not None:
        response.headers["Preference-Applied"] = f"wait={wait_s:g}"
        if await job_client.wait_for_job(handle, wait_s):
            response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{handle.id}"
    # A new job is queued and needs no worker's word; a repeated idempotency key may name a running one.
    fresh = wait_s is None and body.idempotency_key is None
    return await job_client.read_job(temporal, principal.tenant_id, handle.id, ask_worker=not fresh)


@router.get("", response_model=JobList)
async def list_jobs(
    principal: ViewerDep,
    temporal: TemporalDep,
    status: JobStatus | None = None,
    model: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=4000)] = None,
) -> JobList:
    return await job_client.list_jobs(
        temporal, principal.tenant_id, status=status, model=model, limit=limit, cursor=cursor
    )


@router.get("/{job_id}", response_model=Job)
async def get_job(job_id: str, principal: ViewerDep, temporal: TemporalDep) -> Job:
    return await job_client.read_job(temporal, principal.tenant_id, job_id)


@router.post("/{job_id}/cancel", status_code=202, response_model=Job)
async def cancel_job(job_id: str, principal: AppDep, temporal: TemporalDep) -> Job:
    return await job_client.cancel_job(temporal, principal.tenant_id, job_id)


@router.post("/{job_id}/repair", status_code=202, response_model=Job)
async def repair_job(
    job_id: str, body: RepairInput, principal: AppDep, temporal: TemporalDep, routes: RoutesDep
) -> Job:
    if body.action == "reroute":
        if body.model is None:
            raise ApiError(422, "validation_error", "model: required for reroute")
        require_route(routes, body.model)
    return await job_client.repair_job(temporal, principal.tenant_id, job_id, body)
