"""Temporal's floor for a durable LLM call on this machine: the fastest way to run one that the SDK offers.

The bench's `baseline` is Temporal used plainly (an API process starts a workflow, a worker process runs its
activity); this is Temporal tuned as far as it goes, with nothing of Kintsugi's on top. So what a Kintsugi
system costs over the floor is Kintsugi's own, and what the floor costs over a direct call is Temporal's.

One FastAPI endpoint (`POST /v1/chat/completions`) starts a workflow whose one local activity POSTs the body to
the upstream with httpx (the baseline's activity, limits and retry policy), and waits for its result. The API
process runs the worker itself, on the same `Client` object, so a start with `request_eager_start=True` hands
the first workflow task straight to it: no task-queue round trip, and with a local activity, no activity task.
The workflow runs unsandboxed and the worker takes no remote activities (there are none to take). No database,
auth, search attributes or bookkeeping. One process, configured by env:

    BENCH_TEMPORAL_ADDRESS=127.0.0.1:7233 BENCH_TASK_QUEUE=floor BENCH_UPSTREAM_URL=http://127.0.0.1:9101 \\
        python -m uvicorn bench.floor:create_app --factory --port 8100

A job's history is six events: started, a workflow task (scheduled, started, completed) whose completion
carries the local activity's marker, and completed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.baseline import CALL_RETRY, CALL_TIMEOUT, WORKFLOW_ID_HEADER, UpstreamActivities, env, upstream_http


@workflow.defn
class FloorWorkflow:
    @workflow.run
    async def run(self, body: dict[str, Any]) -> dict[str, Any]:
        return await workflow.execute_local_activity_method(
            UpstreamActivities.call_upstream, body, start_to_close_timeout=CALL_TIMEOUT, retry_policy=CALL_RETRY
        )


def create_app() -> FastAPI:
    address = env("BENCH_TEMPORAL_ADDRESS")
    task_queue = env("BENCH_TASK_QUEUE", "floor")
    upstream_url = env("BENCH_UPSTREAM_URL")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = await Client.connect(address)
        async with upstream_http() as http:
            worker = Worker(
                client,
                task_queue=task_queue,
                workflows=[FloorWorkflow],
                activities=[UpstreamActivities(http, upstream_url).call_upstream],
                workflow_runner=UnsandboxedWorkflowRunner(),
                no_remote_activities=True,
                # The same local activity slots as Kintsugi's worker.
                max_concurrent_local_activities=200,
            )
            async with worker:
                # The worker's own client: an eager start is handed only to a worker on the client that starts it.
                app.state.client = client
                yield

    app = FastAPI(title="Temporal's floor", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await request.json()
        client: Client = request.app.state.client
        workflow_id = f"floor_{uuid.uuid4().hex}"
        handle = await client.start_workflow(
            FloorWorkflow.run, body, id=workflow_id, task_queue=task_queue, request_eager_start=True
        )
        try:
            result = await handle.result()
        except WorkflowFailureError as err:
            return JSONResponse({"error": {"message": str(err.cause or err)}}, status_code=502)
        return JSONResponse(result, headers={WORKFLOW_ID_HEADER: workflow_id})

    return app
