"""A process killed with SIGKILL mid-flight loses no job and bills none twice: a shared worker, or an API
process running synchronous jobs on its own worker."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from tests.support.common import HELLO
from tests.support.harness import ADMIN_KEY, Harness, KintsugiFactory
from tests.support.replay import assert_replays

JOBS = 8
SYNC_JOBS = 50


async def _until_calls(kintsugi: Harness, model: str, n: int) -> int:
    """Wait (15 s at most) until the upstream has received `n` calls for `model`: that many jobs are mid-call."""
    for _ in range(300):
        if kintsugi.upstream.calls(model) >= n:
            break
        await asyncio.sleep(0.05)
    return kintsugi.upstream.calls(model)


@pytest.mark.parametrize(
    "route",
    [
        "activity",  # calls as activities: retried once their start-to-close timeout passes
        "local-fallback",  # calls as local activities: retried once the workflow task times out (10 s)
    ],
)
async def test_sigkilled_worker_loses_nothing_and_bills_once(
    make_kintsugi: KintsugiFactory, sqlite_url: str, tmp_path: Path, route: str
) -> None:
    # No API worker: every job runs on the worker process that is killed.
    async with make_kintsugi(sqlite_url, run_worker=False, api_worker=False) as kintsugi:
        slow = kintsugi.model("a")
        kintsugi.upstream.configure(slow, latency_ms=1500)
        log = tmp_path / "worker.log"
        with kintsugi.worker_process(log) as first:
            jobs = [
                (await kintsugi.submit({"model": route, "messages": [{"role": "user", "content": f"n{i}"}]})).json()
                for i in range(JOBS)
            ]
            assert await _until_calls(kintsugi, slow, JOBS) >= JOBS, log.read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)

        with kintsugi.worker_process(log):
            finished = [await kintsugi.wait_status(job["id"], "succeeded", "failed", timeout_s=60) for job in jobs]

        assert [job["status"] for job in finished] == ["succeeded"] * JOBS, log.read_text()
        # Each job's first call died with the worker and was made again by the second one.
        assert kintsugi.upstream.calls(slow) >= 2 * JOBS
        for job in finished:
            assert len(await kintsugi.cost_rows(job["id"])) == 1


async def test_sigkilled_api_process_loses_no_synchronous_job_and_bills_each_once(
    make_kintsugi: KintsugiFactory, sqlite_url: str, tmp_path: Path
) -> None:
    # The test process is the shared worker pool (no API worker of its own); the API runs in a process
    # with its worker, which starts every chat completion eagerly on itself.
    async with make_kintsugi(sqlite_url, api_worker=False) as kintsugi:
        slow = kintsugi.model("a")
        kintsugi.upstream.configure(slow, latency_ms=30_000)  # no call answers before the kill
        log = tmp_path / "api.log"
        with kintsugi.api_process(log) as (api, url):
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                requests = [
                    asyncio.create_task(
                        http.post(
                            "/v1/chat/completions",
                            json={"model": "primary", "messages": [{"role": "user", "content": f"n{i}"}]},
                            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                        )
                    )
                    for i in range(SYNC_JOBS)
                ]
                assert await _until_calls(kintsugi, slow, SYNC_JOBS) >= SYNC_JOBS, log.read_text()
                api.send_signal(signal.SIGKILL)
                api.wait(timeout=10)
                kintsugi.upstream.configure(slow)  # answers the shared workers at once (and counts from 0)
                answers = await asyncio.gather(*requests, return_exceptions=True)
        assert all(isinstance(answer, httpx.HTTPError) for answer in answers), "a request outlived its process"

        histories = await _finished_histories(kintsugi.temporal, kintsugi.settings.task_queue, SYNC_JOBS)

        for job_id, history in histories.items():
            identities = _task_identities(history)
            assert identities[0].endswith(" api"), f"{job_id} did not start in the API process: {identities}"
            assert not identities[-1].endswith(" api"), f"{job_id} did not finish on the shared workers"
            assert len(await kintsugi.cost_rows(job_id)) == 1, f"{job_id} is not billed exactly once"
            assert len(await kintsugi.signatures(job_id)) == 1, f"{job_id}'s prompt is not recorded exactly once"
            assert await kintsugi.event_types(job_id) == ["job.started", "job.succeeded"]
        # Every call died with the API process and was made again by the shared worker.
        assert kintsugi.upstream.calls(slow) == SYNC_JOBS
        # Histories of jobs taken over after a workflow-task timeout replay as well.
        await assert_replays(histories.values())


async def test_sigkilled_shared_worker_mid_call_still_answers_a_synchronous_request(
    make_kintsugi: KintsugiFactory, sqlite_url: str, tmp_path: Path
) -> None:
    # The default deployment: the API runs its worker; a long (`call: activity`) call runs on a shared worker.
    async with make_kintsugi(sqlite_url, run_worker=False) as kintsugi:
        slow = kintsugi.model("a")
        kintsugi.upstream.configure(slow, latency_ms=1500)
        log = tmp_path / "worker.log"
        with kintsugi.worker_process(log) as first:
            request = asyncio.create_task(
                kintsugi.http.post(
                    "/v1/chat/completions", json={"model": "activity", "messages": HELLO}, headers=kintsugi.admin
                )
            )
            assert await _until_calls(kintsugi, slow, 1) >= 1, log.read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)

        with kintsugi.worker_process(log):
            answer = await asyncio.wait_for(request, 60)

        assert answer.status_code == 200, answer.text
        job_id = answer.headers["x-kintsugi-job-id"]
        assert kintsugi.upstream.calls(slow) == 2  # the killed call, made again by the second worker
        assert len(await kintsugi.cost_rows(job_id)) == 1
        await assert_replays([await kintsugi.temporal.get_workflow_handle(job_id).fetch_history()])


async def _finished_histories(temporal: Client, task_queue: str, n: int) -> dict[str, WorkflowHistory]:
    """The histories of the `n` jobs on `task_queue`, once each has completed (a minute at most)."""
    ids: list[str] = []
    for _ in range(100):  # visibility lags its writes by a moment
        ids = [w.id async for w in temporal.list_workflows(f"TaskQueue = '{task_queue}'")]
        if len(ids) >= n:
            break
        await asyncio.sleep(0.1)
    assert len(ids) == n, f"{len(ids)} jobs listed, {n} started"
    handles = [temporal.get_workflow_handle(job_id) for job_id in ids]
    await asyncio.wait_for(asyncio.gather(*(handle.result() for handle in handles)), 60)
    return {handle.id: await handle.fetch_history() for handle in handles}


def _task_identities(history: WorkflowHistory) -> list[str]:
    """Who ran each workflow task, in order (`Settings.api_worker`'s identity ends in " api")."""
    return [
        event.workflow_task_started_event_attributes.identity
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    ]
