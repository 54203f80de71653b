"""The hot path: a synchronous request runs its job in the API process that received it, in one workflow task,
with no search-attribute write that visibility does not need; long calls and async jobs take the shared pool."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from client import job_client
from schemas import search_attributes as search_attrs
from store.queries import DEFAULT_TENANT_ID
from tests.support.common import HELLO
from tests.support.harness import Harness, KintsugiFactory
from tests.support.replay import assert_replays

ONE_TASK = [
    "WORKFLOW_EXECUTION_STARTED",
    "WORKFLOW_TASK_SCHEDULED",
    "WORKFLOW_TASK_STARTED",
    "WORKFLOW_TASK_COMPLETED",
    "MARKER_RECORDED",  # preflight
    "MARKER_RECORDED",  # the upstream call
    "MARKER_RECORDED",  # postflight: the cost row and the events
    "WORKFLOW_EXECUTION_COMPLETED",
]


async def _chat(kintsugi: Harness, model: str = "primary") -> str:
    response = await kintsugi.http.post(
        "/v1/chat/completions", json={"model": model, "messages": HELLO}, headers=kintsugi.admin
    )
    assert response.status_code == 200, response.text
    return response.headers["x-kintsugi-job-id"]


async def _history(kintsugi: Harness, job_id: str) -> WorkflowHistory:
    return await kintsugi.temporal.get_workflow_handle(job_id).fetch_history()


def _types(history: WorkflowHistory) -> list[str]:
    return [EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") for event in history.events]


def _listed_at_start(history: WorkflowHistory) -> str | None:
    """`KintsugiStatus` as the job was started with."""
    started = history.events[0].workflow_execution_started_event_attributes
    payload = started.search_attributes.indexed_fields.get(search_attrs.STATUS.name)
    return json.loads(payload.data) if payload is not None else None


def _identities(history: WorkflowHistory, event_type: EventType.ValueType) -> list[str]:
    """The worker identities that history records on events of `event_type` (tasks and activities started)."""
    started = {
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED: "workflow_task_started_event_attributes",
        EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: "activity_task_started_event_attributes",
    }[event_type]
    return [getattr(e, started).identity for e in history.events if e.event_type == event_type]


async def test_a_chat_completion_runs_in_one_workflow_task_in_the_api_process(kintsugi: Harness) -> None:
    job_id = await _chat(kintsugi)

    history = await _history(kintsugi, job_id)
    assert _types(history) == ONE_TASK
    [runner] = _identities(history, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    assert runner.endswith(" api")
    assert _listed_at_start(history) == "running"
    assert len(await kintsugi.cost_rows(job_id)) == 1
    assert await kintsugi.event_types(job_id) == ["job.started", "job.succeeded"]
    await assert_replays([history])


async def test_embeddings_and_waited_jobs_take_the_same_path(kintsugi: Harness) -> None:
    embedded = await kintsugi.http.post(
        "/v1/embeddings", json={"model": "embed-sim", "input": "hello"}, headers=kintsugi.admin
    )
    waited = await kintsugi.submit({"model": "primary", "messages": HELLO}, wait=10)

    assert embedded.status_code == waited.status_code == 200
    histories = [
        await _history(kintsugi, job_id) for job_id in (embedded.headers["x-kintsugi-job-id"], waited.json()["id"])
    ]
    assert [_types(history) for history in histories] == [ONE_TASK, ONE_TASK]
    await assert_replays(histories)


async def test_with_the_api_worker_off_the_shared_workers_run_it(
    make_kintsugi: KintsugiFactory, sqlite_url: str
) -> None:
    async with make_kintsugi(sqlite_url, api_worker=False) as kintsugi:
        job_id = await _chat(kintsugi)

        history = await _history(kintsugi, job_id)
    # Not started eagerly: it waited in the task queue as `queued` until a worker took it.
    assert _listed_at_start(history) == "queued"
    assert _types(history).count("UPSERT_WORKFLOW_SEARCH_ATTRIBUTES") == 1
    assert "MARKER_RECORDED" in _types(history)  # a synchronous job's calls stay local


async def test_a_long_call_runs_as_an_activity_on_the_shared_workers(kintsugi: Harness) -> None:
    job_id = await _chat(kintsugi, "activity")

    history = await _history(kintsugi, job_id)
    [caller] = _identities(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    assert caller == kintsugi.temporal.identity  # the shared worker's: the API's takes no remote activities
    assert _identities(history, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)[0].endswith(" api")
    assert "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES" not in _types(history)  # listed as running from its start
    await assert_replays([history])


async def test_a_submitted_job_says_running_once_a_worker_has_it_and_calls_on_the_shared_workers(
    kintsugi: Harness,
) -> None:
    job = (await kintsugi.submit({"model": "primary", "messages": HELLO})).json()
    await kintsugi.wait_status(job["id"], "succeeded")

    history = await _history(kintsugi, job["id"])
    assert _listed_at_start(history) == "queued"
    assert _types(history).count("UPSERT_WORKFLOW_SEARCH_ATTRIBUTES") == 1  # running; the close says the end
    # Nobody waits on it: `call: auto` makes its call an activity, which the shared workers run.
    assert _identities(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED) == [kintsugi.temporal.identity]
    await assert_replays([history])


async def test_a_job_mid_call_reads_as_running_at_once(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), latency_ms=1500)
    key = uuid.uuid4().hex
    job_id = job_client.job_id_for(DEFAULT_TENANT_ID, key)  # known before the waited request answers
    waited = asyncio.create_task(
        kintsugi.submit({"model": "primary", "messages": HELLO, "idempotency_key": key}, wait=10)
    )
    for _ in range(100):
        if kintsugi.upstream.calls(kintsugi.model("a")):
            break
        await asyncio.sleep(0.02)

    started = asyncio.get_running_loop().time()
    job = (await kintsugi.http.get(f"/v1/jobs/{job_id}", headers=kintsugi.admin)).json()
    took_s = asyncio.get_running_loop().time() - started

    # Its workflow task holds the local call: no query waits on it (it would, for the 3 s query timeout).
    assert job["status"] == "running"
    assert took_s < 1.0
    assert (await waited).json()["status"] == "succeeded"


async def test_jobs_are_listed_by_how_they_ended(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("c"), fail_always=True, status=400)
    succeeded = await _chat(kintsugi)
    failed = (await kintsugi.submit({"model": "other", "messages": HELLO}, wait=10)).json()["id"]

    listed = {status: await _listed(kintsugi, status, {succeeded, failed}) for status in ("succeeded", "failed")}

    assert listed == {"succeeded": {succeeded: "succeeded"}, "failed": {failed: "failed"}}
    assert await _listed(kintsugi, "running", {succeeded, failed}, settle_s=0) == {}


async def _listed(kintsugi: Harness, status: str, ids: set[str], settle_s: float = 5.0) -> dict[str, Any]:
    """Which of `ids` `GET /v1/jobs?status=` lists (and as what), once one shows (visibility lags a moment)."""
    deadline = asyncio.get_running_loop().time() + settle_s
    while True:
        page = await kintsugi.http.get("/v1/jobs", params={"status": status}, headers=kintsugi.admin)
        found = {job["id"]: job["status"] for job in page.json()["data"] if job["id"] in ids}
        if found or asyncio.get_running_loop().time() >= deadline:
            return found
        await asyncio.sleep(0.1)
