"""`GET /v1/jobs/{id}/trace` through the API: the billed call's cost, and tenancy."""

from __future__ import annotations

import pytest

from domain.traces.build import walk
from schemas.traces import Span, Trace
from tests.support.common import HELLO
from tests.support.harness import Harness


def calls(trace: Trace) -> list[Span]:
    return [span for span in walk(trace.root) if span.name == "call_model"]


async def test_trace_endpoint_costs_and_tenancy(kintsugi_db: Harness) -> None:
    api = kintsugi_db.http
    job = (await kintsugi_db.submit({"model": "priced", "messages": HELLO}, wait=10)).json()
    assert job["status"] == "succeeded"

    response = await api.get(f"/v1/jobs/{job['id']}/trace", headers=kintsugi_db.admin)

    assert response.status_code == 200, response.text
    trace = Trace.model_validate(response.json())
    assert trace.status == "succeeded"
    [call] = calls(trace)
    assert call.attributes["cost_usd"] == pytest.approx(job["cost_usd"])
    assert call.attributes["input_tokens"] == job["usage"]["input_tokens"]
    assert trace.cost_usd == pytest.approx(job["cost_usd"]) and job["cost_usd"] > 0

    tenant = (await api.post("/v1/tenants", json={"name": "other"}, headers=kintsugi_db.admin)).json()
    key = (
        await api.post("/v1/keys", json={"tenant_id": tenant["id"], "role": "viewer"}, headers=kintsugi_db.admin)
    ).json()
    other = {"Authorization": f"Bearer {key['key']}"}
    foreign = await api.get(f"/v1/jobs/{job['id']}/trace", headers=other)
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "job_not_found"

    missing = await api.get("/v1/jobs/job_nope/trace", headers=kintsugi_db.admin)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "job_not_found"
