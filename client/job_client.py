"""Jobs through the Temporal client: start a job workflow, read one back, list, cancel and repair them.

Used by the API today and by recovery workflows' activities later; errors are domain errors
(`JobNotFound`, `JobFinished`, `JobNotParked`, `InvalidCursor`), never HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from client.codec import decode_history
from domain.errors import InvalidCursor, JobFinished, JobInputTooLarge, JobNotFound, JobNotParked
from domain.job_view import (
    in_workflow_task,
    job_resource,
    job_summary,
    state_from_failure,
    summary_status,
    visibility_query,
)
from domain.pagination import decode_cursor, encode_cursor
from schemas import search_attributes as search_attrs
from schemas.contracts import JOB_WORKFLOW_TYPE
from schemas.jobs import JOB_REVISION, Job, JobCreate, JobInput, JobList, JobState, JobStatus, RepairInput
from settings import Settings
from workflows.llm_job import LLMJobWorkflow

QUERY_TIMEOUT = timedelta(seconds=3)
MAX_JOB_INPUT_BYTES = 1_500_000
"""Temporal refuses a payload over 2 MB; the job's input is carried again to each call, so it stays below."""
JobHandle = WorkflowHandle[LLMJobWorkflow, JobState]


def job_id_for(tenant_id: str, idempotency_key: str | None) -> str:
    """A fresh id, or one derived from the tenant's idempotency key so a repeat finds the same job."""
    if idempotency_key is None:
        return f"job_{uuid.uuid4().hex}"
    digest = hashlib.sha256(f"{tenant_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"job_{digest[:32]}"


async def start_job(
    client: Client,
    settings: Settings,
    *,
    tenant_id: str,
    request: JobCreate,
    key_id: str | None = None,
    job_id: str | None = None,
    relay_url: str | None = None,
    synchronous: bool = False,
    admitted_tokens: int | None = None,
) -> JobHandle:
    """Start the job (or find the one its idempotency key started).

    Args:
        key_id: The API key submitting the job (`JobInput.key_id`).
        job_id: Chosen by the caller when it must know the id before the job runs (to watch its stream).
        relay_url: The API replica that relays the answer live to a client (`JobInput.relay_url`).
        admitted_tokens: What the rate limiter charged the TPM buckets (`JobInput.admitted_tokens`).
        synchronous: Someone waits for the answer (`JobInput.synchronous`). With the API's worker
            (`Settings.api_worker`), the server is asked to hand the job's first workflow task straight back to
            it (eager start), and the whole job runs in that task. The server or a busy worker may refuse; the
            job is then dispatched like any other (and listed `running` meanwhile: accepted to run now).
    """
    eager = synchronous and settings.api_worker
    job_id = job_id or job_id_for(tenant_id, request.idempotency_key)
    job_input = JobInput(
        tenant_id=tenant_id,
        model=request.model,
        messages=request.messages,
        params=request.params,
        metadata=request.metadata,
        on_exhausted=request.on_exhausted,
        park_timeout_s=settings.park_timeout_s,
        kind=request.kind,
        embedding=request.embedding,
        relay_url=relay_url,
        synchronous=synchronous,
        key_id=key_id,
        admitted_tokens=admitted_tokens or None,
        revision=JOB_REVISION,
    )
    size = len(job_input.model_dump_json())
    if size > MAX_JOB_INPUT_BYTES:
        raise JobInputTooLarge(size, MAX_JOB_INPUT_BYTES)
    try:
        return await client.start_workflow(
            LLMJobWorkflow.run,
            job_input,
            id=job_id,
            task_queue=settings.task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attrs.TENANT, tenant_id),
                    SearchAttributePair(search_attrs.MODEL, request.model),
                    # A job started eagerly is running as it is listed; any other waits for a worker and
                    # says `running` once one picks it up (one upsert).
                    SearchAttributePair(search_attrs.STATUS, "running" if eager else "queued"),
                ]
            ),
            request_eager_start=eager,
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
            raise JobNotFound(job_id) from err
        raise
    if (
        description.workflow_type != JOB_WORKFLOW_TYPE
        or description.typed_search_attributes.get(search_attrs.TENANT) != tenant_id
    ):
        raise JobNotFound(job_id)
    return handle, description


async def read_job(client: Client, tenant_id: str, job_id: str, *, ask_worker: bool = True) -> Job:
    """The job resource. `ask_worker=False` skips the `state` query of a running job: for a job just
    queued there is nothing more to know, and the query would cost a round trip through a worker."""
    handle, description = await describe_job(client, tenant_id, job_id)
    return await job_from(handle, description, ask_worker=ask_worker)


async def job_from(handle: JobHandle, description: WorkflowExecutionDescription, *, ask_worker: bool = True) -> Job:
    state = await _state(handle, description, ask_worker)
    return job_resource(handle.id, state, created_at=description.start_time, closed_at=description.close_time)


async def wait_for_job(handle: JobHandle, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for the job to finish; True if it did."""
    try:
        await asyncio.wait_for(handle.result(), timeout_s)
    except TimeoutError:
        return False
    except WorkflowFailureError:
        pass
    return True


async def job_history(handle: JobHandle) -> dict[str, Any]:
    """The job's workflow history as JSON (`temporal workflow show -o json`), which traces are built from, with
    the payloads the codec encrypted decrypted (Temporal returns history as it stores it)."""
    history = (await handle.fetch_history()).to_json_dict()
    # The handle keeps the client that made it private; its codec is the one that wrote this history.
    codec = handle._client.data_converter.payload_codec
    return history if codec is None else await decode_history(history, codec)


async def finished_state(handle: JobHandle, model: str) -> JobState:
    """The final state of a finished job, however it ended (waits for it to finish)."""
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        return state_from_failure(err, model)


async def cancel_job(client: Client, tenant_id: str, job_id: str) -> Job:
    """Request cancellation of a running or parked job; the job as it stands (it ends `cancelled` once the
    workflow has stopped)."""
    handle, description = await describe_job(client, tenant_id, job_id)
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise JobFinished(job_id)
    try:
        await handle.cancel()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # it finished since the description was read
            raise JobFinished(job_id) from err
        raise
    return await job_from(handle, description)


async def repair_job(client: Client, tenant_id: str, job_id: str, request: RepairInput) -> Job:
    """Send the `repair` Update to a parked job; the workflow's validator refuses any other job."""
    handle, description = await describe_job(client, tenant_id, job_id)
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise JobNotParked(f"job {job_id} has finished")
    try:
        await handle.execute_update(LLMJobWorkflow.repair, request)
    except WorkflowUpdateFailedError as err:
        raise JobNotParked(str(err.cause or err)) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # it finished since the description was read
            raise JobNotParked(f"job {job_id} has finished") from err
        raise
    return await read_job(client, tenant_id, job_id)


async def list_jobs(
    client: Client,
    tenant_id: str,
    *,
    status: JobStatus | None,
    model: str | None,
    limit: int,
    cursor: str | None,
) -> JobList:
    query = visibility_query(tenant_id, status=status, model=model)
    executions, next_cursor = await list_page(client, query, limit=limit, cursor=cursor)
    return JobList(data=[job_summary(execution) for execution in executions], next_cursor=next_cursor)


async def list_page(
    client: Client, query: str, *, limit: int, cursor: str | None
) -> tuple[list[WorkflowExecution], str | None]:
    """One page of the executions a visibility query matches, and the cursor of the next (None: the last)."""
    iterator = client.list_workflows(query, page_size=limit, next_page_token=decode_cursor(cursor))
    try:
        await iterator.fetch_next_page()
    except RPCError as err:
        if err.status == RPCStatusCode.INVALID_ARGUMENT:  # a well-formed token the server does not know
            raise InvalidCursor from err
        raise
    return list(iterator.current_page or []), encode_cursor(iterator.next_page_token)


async def _state(handle: JobHandle, description: WorkflowExecutionDescription, ask_worker: bool) -> JobState:
    status = description.status
    # A worker is inside the job's workflow task (its local calls run there): a query would wait for the task to
    # end, so the job reads as running without one.
    busy = in_workflow_task(description)
    if status == WorkflowExecutionStatus.RUNNING and ask_worker and not busy:
        try:
            return await handle.query(LLMJobWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
        except RPCError:
            pass  # no worker polls yet: what the server itself knows
    model = description.typed_search_attributes.get(search_attrs.MODEL) or ""
    if status != WorkflowExecutionStatus.RUNNING:
        state = await finished_state(handle, model)
        if state.metadata or not (metadata := await _metadata(description)):
            return state
        return state.model_copy(update={"metadata": metadata})  # ended from outside: the memo has it
    listed = "running" if busy else summary_status(description)
    return JobState(status=listed, model=model, metadata=await _metadata(description))


async def _metadata(description: WorkflowExecutionDescription) -> dict[str, str]:
    metadata = (await description.memo()).get("metadata")
    return metadata if isinstance(metadata, dict) else {}
