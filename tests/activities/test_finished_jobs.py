"""`closed_job`: the trace sinks read a job only once its workflow has closed, and wait briefly for that."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.exports.finished_jobs import JobStillRunning, closed_job
from domain.errors import JobNotFound
from store.queries import DEFAULT_TENANT_ID
from tests.support.harness import Harness


async def _parked_job(kintsugi: Harness) -> str:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=503)
    body = {"model": "primary", "messages": [{"role": "user", "content": "hi"}], "on_exhausted": "park"}
    job_id: str = (await kintsugi.submit(body)).json()["id"]
    await kintsugi.wait_status(job_id, "parked")
    return job_id


async def test_a_job_still_running_raises_so_the_batch_is_retried(kintsugi: Harness) -> None:
    job_id = await _parked_job(kintsugi)

    with pytest.raises(JobStillRunning):
        await closed_job(kintsugi.temporal, DEFAULT_TENANT_ID, job_id, timeout_s=0.2)


async def test_a_job_that_closes_while_waited_for_is_returned_closed(kintsugi: Harness) -> None:
    job_id = await _parked_job(kintsugi)
    waiting = asyncio.create_task(closed_job(kintsugi.temporal, DEFAULT_TENANT_ID, job_id, timeout_s=30))

    response = await kintsugi.http.post(f"/v1/jobs/{job_id}/cancel", headers=kintsugi.admin)
    assert response.status_code == 202, response.text
    handle = await waiting

    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_another_tenants_job_is_not_found(kintsugi: Harness) -> None:
    job_id = await _parked_job(kintsugi)

    with pytest.raises(JobNotFound):
        await closed_job(kintsugi.temporal, "another-tenant", job_id, timeout_s=0.2)
