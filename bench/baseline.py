"""A bare Temporal baseline: the least an LLM call on Temporal can cost, to measure Kintsugi against.

One FastAPI endpoint (`POST /v1/chat/completions`) starts a one-activity workflow and waits for its result
(`client.execute_workflow`); the activity POSTs the body to the upstream with httpx. Same process layout as
Kintsugi: an API process and a worker process, each configured by env:

    BENCH_TEMPORAL_ADDRESS=127.0.0.1:7233 BENCH_TASK_QUEUE=baseline \\
        python -m uvicorn bench.baseline:create_app --factory --port 8100
    BENCH_TEMPORAL_ADDRESS=127.0.0.1:7233 BENCH_TASK_QUEUE=baseline \\
        BENCH_UPSTREAM_URL=http://127.0.0.1:9101 python -m bench.baseline worker

Defaults everywhere (JSON data converter, sandboxed workflows), a RetryPolicy of 3 attempts like the bench
routes file gives Kintsugi, and no database, auth, search attributes or bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import httpx
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse
    from temporalio.client import Client, WorkflowFailureError
    from temporalio.worker import Worker

WORKFLOW_ID_HEADER = "X-Bench-Workflow-Id"
CALL_TIMEOUT = timedelta(seconds=30)
CALL_RETRY = RetryPolicy(maximum_attempts=3)
"""Three attempts, like the bench routes file gives Kintsugi."""


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"{name} is not set")
    return value


class UpstreamActivities:
    def __init__(self, http: httpx.AsyncClient, upstream_url: str) -> None:
        self._http = http
        self._url = upstream_url.rstrip("/") + "/v1/chat/completions"

    @activity.defn
    async def call_upstream(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._http.post(self._url, json=body)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


@workflow.defn
class BaselineWorkflow:
    @workflow.run
    async def run(self, body: dict[str, Any]) -> dict[str, Any]:
        return await workflow.execute_activity_method(
            UpstreamActivities.call_upstream,
            body,
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=CALL_RETRY,
        )


def create_app() -> FastAPI:
    address = env("BENCH_TEMPORAL_ADDRESS")
    task_queue = env("BENCH_TASK_QUEUE", "baseline")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = await Client.connect(address)
        yield

    app = FastAPI(title="bare Temporal baseline", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await request.json()
        client: Client = request.app.state.client
        workflow_id = f"baseline_{uuid.uuid4().hex}"
        try:
            result = await client.execute_workflow(BaselineWorkflow.run, body, id=workflow_id, task_queue=task_queue)
        except WorkflowFailureError as err:
            return JSONResponse({"error": {"message": str(err.cause or err)}}, status_code=502)
        return JSONResponse(result, headers={WORKFLOW_ID_HEADER: workflow_id})

    return app


def upstream_http() -> httpx.AsyncClient:
    """The HTTP client of upstream calls, with the same limits as Kintsugi's worker."""
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    return httpx.AsyncClient(limits=limits, timeout=30)


async def run_worker() -> None:
    client = await Client.connect(env("BENCH_TEMPORAL_ADDRESS"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The same worker slots as Kintsugi's worker.
    async with upstream_http() as http:
        activities = UpstreamActivities(http, env("BENCH_UPSTREAM_URL"))
        worker = Worker(
            client,
            task_queue=env("BENCH_TASK_QUEUE", "baseline"),
            workflows=[BaselineWorkflow],
            activities=[activities.call_upstream],
            max_concurrent_activities=200,
            max_concurrent_local_activities=200,
        )
        async with worker:
            await stop.wait()


def main() -> None:
    if sys.argv[1:] != ["worker"]:
        raise SystemExit("usage: python -m bench.baseline worker  (API: uvicorn bench.baseline:create_app)")
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
