"""Prometheus end to end (dev server, the API with its worker, the fake upstream; SQLite and PostgreSQL): after a run
of known jobs, what `/metrics` counts equals what the database holds, and `kintsugi worker` serves its own counters
and the Temporal SDK's on its metrics port.

prometheus-client's registry is the process's, shared by every test of the session: the API's figures are read as
the difference between a scrape before and a scrape after.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.waits import free_port
from store.queries import DEFAULT_TENANT_ID
from tests.api.test_rate_limits_api import give_policy, new_caller
from tests.support.harness import Harness, KintsugiFactory

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
QUESTION = [{"role": "user", "content": "What colour is the sky on a clear day? One word."}]
_TERMINAL = {"job.succeeded": "succeeded", "job.cache_hit": "succeeded", "job.failed": "failed"}


def _parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _scrape(kintsugi: Harness) -> Samples:
    response = await kintsugi.http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return _parse(response.text)


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class _Delta:
    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return _value(self.after, name, **labels) - _value(self.before, name, **labels)


async def _job(kintsugi: Harness, model: str, *, repeat: bool = False) -> str:
    """A job with `Prefer: wait`; a question of its own, so the response cache answers only a `repeat`."""
    messages = QUESTION if repeat else [{"role": "user", "content": f"Say {uuid.uuid4().hex}."}]
    response = await kintsugi.submit({"model": model, "messages": messages}, wait=20)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] in ("succeeded", "failed"), job
    return str(job["id"])


async def test_counters_equal_the_database_after_known_jobs(kintsugi_db: Harness) -> None:
    kintsugi = kintsugi_db
    a, b, c = kintsugi.model("a"), kintsugi.model("b"), kintsugi.model("c")
    flag = await kintsugi.http.put(
        "/v1/flags/enable_response_cache",
        json={"enabled": True, "tenant_id": DEFAULT_TENANT_ID},
        headers=kintsugi.admin,
    )
    assert flag.status_code == 200, flag.text
    kintsugi.upstream.configure(a)
    kintsugi.upstream.configure(c, fail_always=True, status=400)
    before = await _scrape(kintsugi)

    jobs = [await _job(kintsugi, "primary"), await _job(kintsugi, "primary")]
    # The second: a cache hit.
    jobs += [await _job(kintsugi, "priced", repeat=True), await _job(kintsugi, "priced", repeat=True)]
    jobs.append(await _job(kintsugi, "other"))  # refused by the upstream: failed, nothing billed
    kintsugi.upstream.configure(a, fail_always=True)  # 500s: every retry of `a` fails, then the job reroutes to `b`
    kintsugi.upstream.configure(b)
    jobs.append(await _job(kintsugi, "fallback"))
    delta = _Delta(before, await _scrape(kintsugi))

    costs: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    finished: Counter[tuple[str, str]] = Counter()
    kinds: Counter[tuple[str, str]] = Counter()
    for job_id in jobs:
        for row in await kintsugi.cost_rows(job_id):
            totals = costs[(row.provider, row.model)]
            totals[0] += row.cost_usd or 0.0
            totals[1] += row.input_tokens
            totals[2] += row.output_tokens
        events = await kintsugi.events(job_id)
        [route] = [event.payload["model"] for event in events if event.type == "job.started"]
        for event in events:
            if event.type in _TERMINAL:
                finished[(route, _TERMINAL[event.type])] += 1
            kinds[(route, event.type)] += 1

    assert any(cost > 0 for cost, _, _ in costs.values())  # a priced call, so the sums below are not all zero
    for (provider, model), (cost, input_tokens, output_tokens) in costs.items():
        labels = {"provider": provider, "model": model}
        assert delta("kintsugi_cost_usd_total", **labels) == pytest.approx(cost)
        assert delta("kintsugi_tokens_total", **labels, direction="input") == input_tokens
        assert delta("kintsugi_tokens_total", **labels, direction="output") == output_tokens
    assert finished == Counter({("primary", "succeeded"): 2, ("priced", "succeeded"): 2, ("other", "failed"): 1,
                                ("fallback", "succeeded"): 1})  # fmt: skip
    for (route, status), count in finished.items():
        assert delta("kintsugi_jobs_finished_total", route=route, status=status) == count
    assert delta("kintsugi_cache_hits_total", route="priced") == kinds[("priced", "job.cache_hit")] == 1
    assert delta("kintsugi_reroutes_total", route="fallback") == kinds[("fallback", "job.rerouted")] == 1

    # The upstream's side: one latency observation per attempt; the attempts after the first are retries.
    up = {"provider": "up"}
    assert delta("kintsugi_upstream_duration_seconds_count", **up, model=a, outcome="error") == 3
    assert delta("kintsugi_upstream_duration_seconds_count", **up, model=a, outcome="ok") == 2
    assert delta("kintsugi_upstream_duration_seconds_count", **up, model=b, outcome="ok") == 1
    assert delta("kintsugi_upstream_retries_total", **up, model=a) == 2
    assert delta("kintsugi_upstream_duration_seconds_count", **up, model=c, outcome="error") == 1

    # The API's side: admissions by route, requests by route template and status.
    for route, count in (("primary", 2), ("priced", 2), ("other", 1), ("fallback", 1)):
        assert delta("kintsugi_jobs_submitted_total", route=route, outcome="accepted") == count
    assert delta("kintsugi_http_requests_total", method="POST", route="/v1/jobs", status="200") == len(jobs)
    assert delta("kintsugi_http_request_duration_seconds_count", method="POST", route="/v1/jobs") == len(jobs)


async def test_requests_are_labelled_by_route_template_never_by_path(kintsugi: Harness) -> None:
    before = await _scrape(kintsugi)
    for job_id in ("job-one", "job-two"):
        assert (await kintsugi.http.get(f"/v1/jobs/{job_id}", headers=kintsugi.admin)).status_code == 404
    assert (await kintsugi.http.get("/no/such/page")).status_code == 404
    after = await _scrape(kintsugi)
    delta = _Delta(before, after)

    assert delta("kintsugi_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="404") == 2
    assert delta("kintsugi_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert not any("job-one" in value or "/no/such" in value for _, labels in after for _, value in labels)


async def test_the_worker_serves_its_counters_and_the_sdks_on_its_port(
    make_kintsugi: KintsugiFactory, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("KINTSUGI_WORKER_METRICS_PORT", str(port))
    # No worker in this process, not even the API's: `kintsugi worker` runs every job.
    async with make_kintsugi(sqlite_url, run_worker=False, api_worker=False) as kintsugi:
        kintsugi.upstream.configure(kintsugi.model("a"))
        with kintsugi.worker_process(tmp_path / "worker.log"):
            for _ in range(2):
                response = await kintsugi.submit({"model": "primary", "messages": QUESTION})
                assert response.status_code == 202, response.text
                await kintsugi.wait_status(response.json()["id"], "succeeded", timeout_s=30)
            samples = await _worker_metrics(port, until="kintsugi_jobs_finished_total")

    assert _value(samples, "kintsugi_jobs_finished_total", route="primary", status="succeeded") == 2
    names = {name for name, _ in samples}
    # The SDK's own, through the same port: workflow tasks timed, activities timed, pollers counted.
    assert "temporal_workflow_task_execution_latency_seconds_count" in names, sorted(names)
    assert any(name.startswith("temporal_activity_execution_latency") for name in names), sorted(names)
    assert any(name.startswith("temporal_num_pollers") for name in names), sorted(names)
    completed = sum(
        value
        for (name, labels), value in samples.items()
        if name == "temporal_workflow_completed_total" and ("workflow_type", "LLMJobWorkflow") in labels
    )
    assert completed == 2


async def _worker_metrics(port: int, *, until: str) -> Samples:
    """The worker's scrape once `until` shows in it (the worker may still be starting its server)."""
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                response = await http.get(f"http://127.0.0.1:{port}/metrics")
            except httpx.ConnectError:
                response = None
            if response is not None and until in response.text:
                return _parse(response.text)
            await asyncio.sleep(0.05)
    raise AssertionError(f"the worker's metrics on :{port} never showed {until}")


async def test_a_rate_limit_refusal_is_counted_as_such(kintsugi: Harness) -> None:
    caller = await new_caller(kintsugi)
    await give_policy(kintsugi, caller.tenant_id, {"rpm": 1})
    before = await _scrape(kintsugi)
    assert (await caller.submit()).status_code == 202
    refused = await caller.submit()
    assert refused.status_code == 429, refused.text
    delta = _Delta(before, await _scrape(kintsugi))

    assert delta("kintsugi_jobs_submitted_total", route="sim-1", outcome="accepted") == 1
    assert delta("kintsugi_jobs_submitted_total", route="sim-1", outcome="rate_limited") == 1
    assert delta("kintsugi_rate_limit_refusals_total", limit="rpm", scope="key") == 1
    assert delta("kintsugi_http_requests_total", method="POST", route="/v1/jobs", status="429") == 1
