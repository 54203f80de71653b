"""Record the job histories that the trace and replay tests read: `python -m tests.support.record_histories`.

Each scenario runs a real job (dev server, worker, the API with its own worker, fake upstream, SQLite) and writes
its workflow history, as `temporal workflow show --output json` would print it, to
`tests/fixtures/histories/<name>.json`. Calls run as local activities (the default for a short timeout) unless
the scenario's name ends in `_activity`.

Re-record after a change to `LLMJobWorkflow` that alters its commands, which takes a new `JobInput.revision`
(`tests/workflows/test_replay.py`): first move the histories of the revision that was current to
`tests/fixtures/histories/revision-N/`, where they keep being replayed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from client.connect import connect
from ops.devserver import start_dev_server
from ops.processes import ProcessGroup
from settings import Settings
from store.migrate import upgrade
from tests.support.common import HELLO, HISTORIES
from tests.support.fake_upstream import FakeUpstream
from tests.support.harness import UPSTREAM_KEY_ENV, Harness, running_kintsugi

Scenario = Callable[[Harness], Awaitable[str]]


async def _submit(harness: Harness, model: str, *, wait: float | None = 5, **extra: Any) -> str:
    """`POST /v1/jobs`, by default with `Prefer: wait` (a synchronous job: started eagerly on the API's worker,
    `call: auto` calls local); `wait=None` submits it (queued for any worker, `auto` calls as activities)."""
    response = await harness.submit({"model": model, "messages": HELLO, **extra}, wait=wait)
    response.raise_for_status()
    return str(response.json()["id"])


async def _finish(harness: Harness, job_id: str) -> str:
    await harness.wait_status(job_id, "succeeded", "failed", "cancelled")
    return job_id


async def _parked(harness: Harness, model: str = "primary") -> str:
    harness.upstream.configure(harness.model("a"), fail_always=True, status=500)
    job_id = await _submit(harness, model, wait=1, on_exhausted="park")
    await harness.wait_status(job_id, "parked")
    return job_id


async def _repair(harness: Harness, job_id: str, body: dict[str, Any]) -> None:
    response = await harness.http.post(f"/v1/jobs/{job_id}/repair", json=body, headers=harness.admin)
    response.raise_for_status()


async def success(harness: Harness) -> str:
    """`POST /v1/jobs` without waiting: the job is queued, then a worker picks it up and calls as an activity."""
    return await _finish(harness, await _submit(harness, "primary", wait=None))


async def chat(harness: Harness) -> str:
    """A synchronous chat completion: started eagerly on the API's own worker, run in one workflow task."""
    response = await harness.http.post(
        "/v1/chat/completions", json={"model": "primary", "messages": HELLO}, headers=harness.admin
    )
    response.raise_for_status()
    return response.headers["x-kintsugi-job-id"]


async def retry(harness: Harness, model: str = "primary", wait: float | None = 5) -> str:
    harness.upstream.configure(harness.model("a"), fail_first=2, status=500)
    return await _finish(harness, await _submit(harness, model, wait=wait))


async def reroute(harness: Harness, model: str = "fallback", wait: float | None = 5) -> str:
    harness.upstream.configure(harness.model("a"), fail_always=True, status=503)
    return await _finish(harness, await _submit(harness, model, wait=wait))


async def retry_activity(harness: Harness) -> str:
    """`retry`, submitted, on a deployment whose calls run as (remote) activities."""
    return await retry(harness, "activity", wait=None)


async def reroute_activity(harness: Harness) -> str:
    """`reroute`, submitted, on deployments whose calls run as (remote) activities."""
    return await reroute(harness, "activity-fallback", wait=None)


async def park_repair(harness: Harness) -> str:
    job_id = await _parked(harness)
    harness.upstream.configure(harness.model("a"))  # the provider recovers
    await _repair(harness, job_id, {"action": "retry"})
    return await _finish(harness, job_id)


async def park_reroute(harness: Harness) -> str:
    job_id = await _parked(harness)
    await _repair(harness, job_id, {"action": "reroute", "model": "other"})
    return await _finish(harness, job_id)


async def non_retryable(harness: Harness) -> str:
    harness.upstream.configure(harness.model("a"), fail_always=True, status=400)
    return await _finish(harness, await _submit(harness, "primary"))


async def cancelled(harness: Harness) -> str:
    job_id = await _parked(harness)
    response = await harness.http.post(f"/v1/jobs/{job_id}/cancel", headers=harness.admin)
    response.raise_for_status()
    return await _finish(harness, job_id)


async def cache_hit(harness: Harness) -> str:
    """A repeated chat completion of a tenant with the response cache on: answered from the cache, no call."""
    response = await harness.http.put(
        "/v1/flags/enable_response_cache", json={"enabled": True, "tenant_id": "default"}, headers=harness.admin
    )
    response.raise_for_status()
    await chat(harness)
    return await chat(harness)


async def _default_policy(harness: Harness, document: dict[str, Any]) -> None:
    response = await harness.http.post(
        "/v1/policies", json={"name": "recorded", "document": document, "default": True}, headers=harness.admin
    )
    response.raise_for_status()


async def guarded(harness: Harness) -> str:
    """A job under a policy that redacts the prompt's e-mail address and the answer's phone number, within a
    budget (reserved in preflight, settled in postflight)."""
    await _default_policy(
        harness,
        {
            "budgets": {"daily_usd": 100},
            "guardrails": {"input": {"pii": {"action": "redact"}}, "output": {"pii": {"action": "redact"}}},
        },
    )
    harness.upstream.configure("gpt-4o-mini", content="Call +1 415 555 0132.")
    body = {"model": "priced", "messages": [{"role": "user", "content": "Mail jane@example.com"}]}
    response = await harness.submit(body, wait=5)
    response.raise_for_status()
    return await _finish(harness, str(response.json()["id"]))


async def policy_refused(harness: Harness) -> str:
    """A job its policy refuses in preflight: nothing is called."""
    await _default_policy(harness, {"models": {"deny": ["primary"]}})
    return await _finish(harness, await _submit(harness, "primary"))


async def output_refused(harness: Harness) -> str:
    """An answer the output guardrails refuse: billed, then the job fails."""
    await _default_policy(harness, {"guardrails": {"output": {"json": {"action": "fail"}}}})
    harness.upstream.configure(harness.model("a"), content="not json")
    return await _finish(
        harness, await _submit(harness, "primary", params={"response_format": {"type": "json_object"}})
    )


SCENARIOS: dict[str, Scenario] = {
    "success": success,
    "chat": chat,
    "retry": retry,
    "reroute": reroute,
    "retry_activity": retry_activity,
    "reroute_activity": reroute_activity,
    "park_repair": park_repair,
    "park_reroute": park_reroute,
    "non_retryable": non_retryable,
    "cancelled": cancelled,
    "cache_hit": cache_hit,
    "guarded": guarded,
    "policy_refused": policy_refused,
    "output_refused": output_refused,
}


async def record(temporal_address: str, tmp_path: Path, upstream: FakeUpstream) -> None:
    # `start_dev_server` returned once the namespace answered, so one connect is enough.
    client = await connect(Settings(env="test", admin_api_key="unused", temporal_address=temporal_address))
    HISTORIES.mkdir(parents=True, exist_ok=True)
    for name, scenario in SCENARIOS.items():
        scenario_dir = tmp_path / name
        scenario_dir.mkdir()
        database_url = f"sqlite+aiosqlite:///{scenario_dir / 'kintsugi.db'}"
        await asyncio.to_thread(upgrade, database_url)
        async with running_kintsugi(
            tmp_path=scenario_dir,
            temporal=client,
            temporal_address=temporal_address,
            upstream=upstream,
            database_url=database_url,
        ) as harness:
            job_id = await scenario(harness)
            history = await client.get_workflow_handle(job_id).fetch_history()
        path = HISTORIES / f"{name}.json"
        path.write_text(json.dumps(_without_stack_traces(history.to_json_dict()), indent=1) + "\n")
        print(f"{name}: {job_id}, {len(history.events)} events -> {path.relative_to(Path.cwd())}")


def _without_stack_traces(value: Any) -> Any:
    """Failures keep message, type and cause; their stack traces (local paths, half the bytes) go."""
    if isinstance(value, dict):
        return {k: _without_stack_traces(v) for k, v in value.items() if k != "stackTrace"}
    if isinstance(value, list):
        return [_without_stack_traces(v) for v in value]
    return value


def main() -> None:
    # Every injected upstream failure would print a traceback; the scenarios expect them.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    os.environ.setdefault(UPSTREAM_KEY_ENV, "upstream-secret")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        processes = ProcessGroup(log_dir=tmp_path)
        try:
            server = start_dev_server(processes, db_file=None)
            with FakeUpstream() as upstream:
                asyncio.run(record(server.address, tmp_path, upstream))
        finally:
            processes.stop_all()


if __name__ == "__main__":
    main()
