"""The trace list: which jobs' traces a visibility query finds, and one row per job from visibility alone.

It is the job list's query (`domain.job_view.visibility_query`) with a window on the start time, so a trace
listed is a job the tenant can read.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import WorkflowExecution

from domain.job_view import summary_status, visibility_query
from schemas import search_attributes as search_attrs
from schemas.jobs import JobStatus
from schemas.traces import TraceSummary


def trace_list_query(
    tenant_id: str,
    *,
    status: JobStatus | None = None,
    model: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """The tenant's jobs with the status and model given, started in `[start, end)`."""
    query = visibility_query(tenant_id, status=status, model=model)
    if start is not None:
        query += f" AND StartTime >= '{_rfc3339(start)}'"
    if end is not None:
        query += f" AND StartTime < '{_rfc3339(end)}'"
    return query


def _rfc3339(moment: datetime) -> str:
    # The caller's datetime, never its text: nothing but digits and separators reaches the query. A time
    # without an offset is UTC.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def trace_summary(execution: WorkflowExecution) -> TraceSummary:
    closed = execution.close_time
    return TraceSummary(
        job_id=execution.id,
        tenant_id=execution.typed_search_attributes.get(search_attrs.TENANT) or "",
        status=summary_status(execution),
        model=execution.typed_search_attributes.get(search_attrs.MODEL) or "",
        started_at=execution.start_time,
        closed_at=closed,
        duration_ms=round((closed - execution.start_time).total_seconds() * 1000) if closed else None,
    )
