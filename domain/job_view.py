"""Jobs read back from what Temporal knows of their workflows: pure functions of a description, a visibility
row or a workflow failure (no client calls; `client/job_client.py` makes those)."""

from __future__ import annotations

import re
from datetime import datetime

from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import (
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.exceptions import CancelledError, TerminatedError

from domain.errors import InvalidFilter
from schemas import errors
from schemas import search_attributes as search_attrs
from schemas.contracts import JOB_WORKFLOW_TYPE
from schemas.failures import read_details
from schemas.jobs import Job, JobError, JobState, JobStatus, JobSummary

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/@-]{1,200}$")
"""What a model filter may hold: it is spliced into a visibility query, so no quotes or spaces."""


def visibility_query(tenant_id: str, *, status: JobStatus | None, model: str | None) -> str:
    """The list filter for one tenant's jobs; a model name that could break out of the query is refused."""
    query = f"WorkflowType = '{JOB_WORKFLOW_TYPE}' AND {search_attrs.TENANT.name} = '{tenant_id}'"
    if status is not None:
        query += f" AND {_status_filter(status)}"
    if model is not None:
        if not _SAFE_VALUE.match(model):
            raise InvalidFilter("model may hold letters, digits and ._:/@- only")
        query += f" AND {search_attrs.MODEL.name} = '{model}'"
    return query


_CLOSED_AS: dict[WorkflowExecutionStatus, JobStatus] = {
    WorkflowExecutionStatus.COMPLETED: "succeeded",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
}
"""How a job ended, by how its execution closed: the workflow does not upsert final statuses."""
_VISIBILITY_NAMES = {
    WorkflowExecutionStatus.COMPLETED: "Completed",
    WorkflowExecutionStatus.FAILED: "Failed",
    WorkflowExecutionStatus.TERMINATED: "Terminated",
    WorkflowExecutionStatus.TIMED_OUT: "TimedOut",
    WorkflowExecutionStatus.CANCELED: "Canceled",
}
"""`ExecutionStatus` as visibility queries spell it."""


def _status_filter(status: JobStatus) -> str:
    """A final status is the execution's own; a running job's (queued, running, parked) is ours."""
    closed = [_VISIBILITY_NAMES[execution] for execution, job in _CLOSED_AS.items() if job == status]
    if closed:
        return "ExecutionStatus IN ({})".format(", ".join(f"'{name}'" for name in closed))
    return f"ExecutionStatus = 'Running' AND {search_attrs.STATUS.name} = '{status}'"


def summary_status(execution: WorkflowExecution) -> JobStatus:
    """The job status of a workflow from the server's record alone (no worker asked): `KintsugiStatus` while it
    runs (queued, running, parked), the execution status once closed (by the job itself or from outside:
    terminated, timed out)."""
    if execution.status == WorkflowExecutionStatus.RUNNING:
        listed = execution.typed_search_attributes.get(search_attrs.STATUS) or "queued"
        return listed  # type: ignore[return-value]  # the workflow upserts only JobStatus values
    # Continued-as-new is not a way a job ends (it never continues): read as failed, like an unknown status.
    return _CLOSED_AS.get(execution.status or WorkflowExecutionStatus.FAILED, "failed")


def in_workflow_task(description: WorkflowExecutionDescription) -> bool:
    """A worker is running the job's workflow task right now (and the local activities inside it)."""
    raw = description.raw_description
    return (
        raw.HasField("pending_workflow_task")
        and raw.pending_workflow_task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
    )


def job_summary(execution: WorkflowExecution) -> JobSummary:
    return JobSummary(
        id=execution.id,
        status=summary_status(execution),
        model=execution.typed_search_attributes.get(search_attrs.MODEL) or "",
        created_at=execution.start_time,
        finished_at=execution.close_time,
    )


def state_from_failure(err: WorkflowFailureError, model: str) -> JobState:
    """A job that failed by itself carries its state in the failure; one ended from outside does not."""
    state = read_details(err.cause, JobState)
    if state is not None:
        return state
    if isinstance(err.cause, CancelledError):
        return JobState(status="cancelled", model=model, error=JobError(code=errors.CANCELLED, message="cancelled"))
    code = errors.TERMINATED if isinstance(err.cause, TerminatedError) else errors.JOB_FAILED
    return JobState(status="failed", model=model, error=JobError(code=code, message=str(err.cause or err)))


def job_resource(job_id: str, state: JobState, *, created_at: datetime, closed_at: datetime | None) -> Job:
    """The API's job: the workflow's state, with the server's start time, and its close time when the
    workflow ended without recording one (terminated from outside)."""
    return Job(
        id=job_id,
        created_at=created_at,
        **state.model_dump(exclude={"finished_at"}),
        finished_at=state.finished_at or closed_at,
    )
