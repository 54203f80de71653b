"""A job's whole trace: its workflow history read back as a span tree, with the costs the database logged.

The API's trace routes, the trace pages and the OTLP trace export all read a trace here, so they agree.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf.json_format import MessageToDict
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from client import job_client
from domain.traces.build import MAX_CHILD_DEPTH, attach_costs, build_trace, child_executions
from domain.traces.pending import pending_activities
from schemas.traces import BilledCall, Trace
from store import queries

MAX_CHILD_HISTORIES = 100
"""Child workflows read for one trace at most; the spans of any more say when they ran, not what they did."""

Execution = tuple[str, str]


async def load_trace(
    temporal: Client, sessions: async_sessionmaker[AsyncSession], tenant_id: str, job_id: str
) -> Trace:
    """The trace of the tenant's job; raises `JobNotFound` for another tenant's or an unknown job."""
    handle, description = await job_client.describe_job(temporal, tenant_id, job_id)
    history = await job_client.job_history(handle)
    children = await read_child_histories(temporal, history)
    running = description.status == WorkflowExecutionStatus.RUNNING
    trace = build_trace(
        job_id,
        history,
        child_history=lambda workflow_id, run_id: children.get((workflow_id, run_id)),
        pending=pending_activities(MessageToDict(description.raw_description)) if running else (),
    )
    trace.tenant_id = tenant_id
    async with sessions() as session, session.begin():
        rows = await queries.cost_logs_for_job(session, job_id, tenant_id)
    return attach_costs(trace, [BilledCall.model_validate(row, from_attributes=True) for row in rows])


async def read_child_histories(temporal: Client, history: dict[str, Any]) -> dict[Execution, dict[str, Any]]:
    """The histories of the child workflows the job started, and of theirs, level by level."""
    found: dict[Execution, dict[str, Any]] = {}
    level = child_executions(history)
    for _ in range(MAX_CHILD_DEPTH):
        level = [execution for execution in level if execution not in found][: MAX_CHILD_HISTORIES - len(found)]
        if not level:
            break
        histories = await asyncio.gather(*(_history(temporal, *execution) for execution in level))
        found.update((execution, read) for execution, read in zip(level, histories, strict=True) if read)
        level = [child for read in histories if read for child in child_executions(read)]
    return found


async def _history(temporal: Client, workflow_id: str, run_id: str) -> dict[str, Any] | None:
    try:
        return await job_client.job_history(temporal.get_workflow_handle(workflow_id, run_id=run_id))
    except RPCError:
        return None  # gone past its retention: its span still says when it ran and how it ended
