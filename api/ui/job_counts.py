"""The dashboard's jobs by status, counted by Temporal's visibility with the same filters as the job list."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import get_args

from starlette.datastructures import State
from temporalio.service import RPCError

from api.temporal import connect_temporal
from client.connect import TemporalUnavailable
from domain.job_view import visibility_query
from schemas.jobs import JobStatus

COUNT_TIMEOUT_S = 3.0
"""A page waits this long for Temporal, then renders without the counts rather than hang."""
STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)


@dataclass(frozen=True)
class JobCounts:
    by_status: dict[JobStatus, int]
    """Every status, in `JobStatus` order; empty when Temporal could not be asked."""
    unavailable: str | None = None
    """Why there are no counts, in words for the page."""

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


async def count_jobs(state: State, tenant_id: str) -> JobCounts:
    """One count per status, concurrently. A status filter is the job list's (`visibility_query`), so a
    count here is the length of `GET /v1/jobs?status=…` (up to visibility's own lag)."""
    try:
        return await asyncio.wait_for(_count(state, tenant_id), COUNT_TIMEOUT_S)
    except TemporalUnavailable:
        return JobCounts({}, unavailable="Temporal is unavailable, so jobs cannot be counted right now.")
    except TimeoutError:
        return JobCounts({}, unavailable=f"Temporal did not answer within {COUNT_TIMEOUT_S:g} s; jobs are not counted.")
    except RPCError as err:
        return JobCounts({}, unavailable=f"Temporal refused to count jobs ({err.status.name}).")


async def _count(state: State, tenant_id: str) -> JobCounts:
    client = await connect_temporal(state)
    counts = await asyncio.gather(
        *(client.count_workflows(visibility_query(tenant_id, status=status, model=None)) for status in STATUSES)
    )
    return JobCounts({status: result.count for status, result in zip(STATUSES, counts, strict=True)})
