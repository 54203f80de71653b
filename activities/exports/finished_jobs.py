"""The job a terminal outbox event names, once its workflow has closed: what the trace sinks read.

Postflight (or `record_events`) commits a job's terminal event just before the workflow task that closes the
job completes, so the export can see the event while history still ends at the job's first task. A trace
read then would have no calls and no end; the sinks wait for the close instead, briefly.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionStatus

from client import job_client

CLOSE_WAIT_S = 10.0
"""How long a sink waits for a job whose terminal event it holds to close; longer, and it raises so the batch
is retried later (a job whose worker died mid-task closes after the workflow task's timeout)."""


class JobStillRunning(Exception):
    """The job has a terminal event but its workflow has not closed yet: deliver the batch again later."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} has not closed yet")
        self.job_id = job_id


async def closed_job(
    temporal: Client, tenant_id: str, job_id: str, *, timeout_s: float = CLOSE_WAIT_S
) -> job_client.JobHandle:
    """The tenant's job once closed; raises `JobNotFound` (gone past retention, or not the tenant's) or
    `JobStillRunning`."""
    handle, description = await job_client.describe_job(temporal, tenant_id, job_id)
    if description.status == WorkflowExecutionStatus.RUNNING and not await job_client.wait_for_job(handle, timeout_s):
        raise JobStillRunning(job_id)
    return handle
