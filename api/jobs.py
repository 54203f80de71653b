"""Jobs as the API sees them: start a job workflow, read one back, list a tenant's."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import uuid
from datetime import timedelta

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError
from schemas import errors
from schemas import search_attributes as sa
from schemas.jobs import TERMINAL_STATUSES, Job, JobCreate, JobError, JobInput, JobList, JobState, JobStatus, JobSummary
from settings import Settings
from workflows.llm_job import LLMJobWorkflow

QUERY_TIMEOUT = timedelta(seconds=3)
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/@-]{1,200}$")
JobHandle = WorkflowHandle[LLMJobWorkflow, JobState]


def job_id_for(tenant_id: str, idempotency_key: str | None) -> str:
    """A fresh id, or one derived from the tenant's idempotency key so a repeat finds the same job."""
    if idempotency_key is None:
        return f"job_{uuid.uuid4().hex}"
    digest = hashlib.sha256(f"{tenant_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"job_{digest[:32]}"


async def start_job(
    client: Client, settings: Settings, tenant_id: str, request: JobCreate, *, job_id: str | None = None
) -> JobHandle:
    job_id = job_id or job_id_for(tenant_id, request.idempotency_key)
    job_input = JobInput(
        tenant_id=tenant_id,
        model=request.model,
        messages=request.messages,
        params=request.params,
        metadata=request.metadata,
        on_exhausted=request.on_exhausted,
        park_timeout_s=settings.park_timeout_s,
    )
    try:
        return await client.start_workflow(
            LLMJobWorkflow.run,
            job_input,
            id=job_id,
            task_queue=settings.task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.TENANT, tenant_id),
                    SearchAttributePair(sa.MODEL, request.model),
                    SearchAttributePair(sa.STATUS, "queued"),
                ]
            ),
            # A repeated idempotency key returns the job it started, running or finished, never a second one.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # So that reading a job without asking a worker still shows its metadata.
            memo={"metadata": request.metadata},
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle_for(LLMJobWorkflow.run, job_id)


async def describe_job(client: Client, tenant_id: str, job_id: str) -> tuple[JobHandle, WorkflowExecutionDescription]:
    """The job's handle and description; another tenant's job (or any other workflow) is not found."""
    handle = client.get_workflow_handle_for(LLMJobWorkflow.run, job_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise _not_found(job_id) from err
        raise
    if (
        description.workflow_type != LLMJobWorkflow.__name__
        or description.typed_search_attributes.get(sa.TENANT) != tenant_id
    ):
        raise _not_found(job_id)
    return handle, description


async def read_job(client: Client, tenant_id: str, job_id: str, *, ask_worker: bool = True) -> Job:
    """The job resource. `ask_worker=False` skips the `state` query of a running job: for a job just
    queued there is nothing more to know, and the query would cost a round trip through a worker."""
    handle, description = await describe_job(client, tenant_id, job_id)
    return await job_from(handle, description, ask_worker=ask_worker)


async def job_from(handle: JobHandle, description: WorkflowExecutionDescription, *, ask_worker: bool = True) -> Job:
    state = await _state(handle, description, ask_worker)
    return Job(
        id=handle.id,
        created_at=description.start_time,
        **state.model_dump(exclude={"finished_at"}),
        finished_at=state.finished_at or description.close_time,
    )


async def wait_for_job(handle: JobHandle, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for the job to finish; True if it did."""
    try:
        await asyncio.wait_for(handle.result(), timeout_s)
    except TimeoutError:
        return False
    except WorkflowFailureError:
        pass
    return True


async def finished_state(handle: JobHandle, model: str) -> JobState:
    """The final state of a finished job, however it ended (waits for it to finish)."""
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        return _state_from_failure(err, model)


async def _state(handle: JobHandle, description: WorkflowExecutionDescription, ask_worker: bool) -> JobState:
    status = description.status
    if status == WorkflowExecutionStatus.RUNNING and ask_worker:
        try:
            return await handle.query(LLMJobWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
        except RPCError:
            # No worker polls yet, or a `call: local` call holds the workflow task: fall back to what the
            # server itself knows.
            pass
    model = description.typed_search_attributes.get(sa.MODEL) or ""
    if status != WorkflowExecutionStatus.RUNNING:
        state = await finished_state(handle, model)
        if state.metadata or not (metadata := await _metadata(description)):
            return state
        return state.model_copy(update={"metadata": metadata})  # ended from outside: the memo has it
    return JobState(status=_summary_status(description), model=model, metadata=await _metadata(description))


async def _metadata(description: WorkflowExecutionDescription) -> dict[str, str]:
    metadata = (await description.memo()).get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _state_from_failure(err: WorkflowFailureError, model: str) -> JobState:
    """A failed job carries its state in the failure; a job ended from outside the workflow does not."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        try:
            return JobState.model_validate(cause.details[0])
        except ValueError:
            pass
    if isinstance(cause, CancelledError):
        return JobState(status="cancelled", model=model, error=JobError(code=errors.CANCELLED, message="cancelled"))
    code = errors.TERMINATED if isinstance(cause, TerminatedError) else errors.JOB_FAILED
    return JobState(status="failed", model=model, error=JobError(code=code, message=str(cause or err)))


def _summary_status(description: WorkflowExecution) -> JobStatus:
    recorded = description.typed_search_attributes.get(sa.STATUS) or "queued"
    status = description.status
    if status == WorkflowExecutionStatus.RUNNING or recorded in TERMINAL_STATUSES:
        return recorded  # type: ignore[return-value]
    # Closed from outside the workflow (terminated, timed out, cancelled before it ran).
    return "cancelled" if status == WorkflowExecutionStatus.CANCELED else "failed"


async def list_jobs(
    client: Client,
    tenant_id: str,
    *,
    status: JobStatus | None,
    model: str | None,
    limit: int,
    cursor: str | None,
) -> JobList:
    query = f"WorkflowType = '{LLMJobWorkflow.__name__}' AND {sa.TENANT.name} = '{tenant_id}'"
    if status is not None:
        query += f" AND {sa.STATUS.name} = '{status}'"
    if model is not None:
        if not _SAFE_VALUE.match(model):
            raise ApiError(400, "invalid_filter", "model may hold letters, digits and ._:/@- only")
        query += f" AND {sa.MODEL.name} = '{model}'"
    iterator = client.list_workflows(query, page_size=limit, next_page_token=_decode_cursor(cursor))
    try:
        await iterator.fetch_next_page()
    except RPCError as err:
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from err
        raise
    page = iterator.current_page or []
    data = [
        JobSummary(
            id=execution.id,
            status=_summary_status(execution),
            model=execution.typed_search_attributes.get(sa.MODEL) or "",
            created_at=execution.start_time,
            finished_at=execution.close_time,
        )
        for execution in page
    ]
    token = iterator.next_page_token
    return JobList(data=data, next_cursor=base64.urlsafe_b64encode(token).decode() if token else None)


def _decode_cursor(cursor: str | None) -> bytes | None:
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode())
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from err


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id}")
