"""The trace routes through the API: a job's trace with the billed call's cost, the trace list and its
filters, the JSON and OTLP exports; and tenancy for each."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from domain.traces.build import is_call, walk
from schemas.traces import Span, Trace
from tests.domain.test_trace_otlp import attrs, decode, spans_of
from tests.support.common import HELLO
from tests.support.harness import Harness


def calls(trace: Trace) -> list[Span]:
    return [span for span in walk(trace.root) if is_call(span)]


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


async def new_key(harness: Harness, role: str, tenant_id: str | None = None) -> tuple[dict[str, str], str]:
    """A key of `role` (in a new tenant unless one is named): its headers and its tenant."""
    if tenant_id is None:
        tenant = await harness.http.post("/v1/tenants", json={"name": "traced"}, headers=harness.admin)
        assert tenant.status_code == 201, tenant.text
        tenant_id = str(tenant.json()["id"])
    key = await harness.http.post("/v1/keys", json={"tenant_id": tenant_id, "role": role}, headers=harness.admin)
    assert key.status_code == 201, key.text
    return {"Authorization": f"Bearer {key.json()['key']}"}, tenant_id


async def run_job(harness: Harness, headers: dict[str, str], model: str) -> dict[str, Any]:
    response = await harness.http.post(
        "/v1/jobs", json={"model": model, "messages": HELLO}, headers={**headers, "Prefer": "wait=10"}
    )
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    for _ in range(400):
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.05)
        job = (await harness.http.get(f"/v1/jobs/{job['id']}", headers=headers)).json()
    raise AssertionError(f"job never finished: {job}")


async def listed(harness: Harness, headers: dict[str, str], at_least: int, **params: Any) -> list[dict[str, Any]]:
    """The trace list once it shows `at_least` rows: visibility lags the workflows a little."""
    data: list[dict[str, Any]] = []
    for _ in range(200):
        response = await harness.http.get("/v1/traces", params=params, headers=headers)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        if len(data) >= at_least:
            return data
        await asyncio.sleep(0.05)
    return data


async def test_trace_list_filters_pages_and_stays_in_its_tenant(kintsugi_db: Harness) -> None:
    api = kintsugi_db.http
    key, tenant = await new_key(kintsugi_db, "app")
    kintsugi_db.upstream.configure(kintsugi_db.model("c"), fail_always=True, status=400)
    succeeded = await run_job(kintsugi_db, key, "primary")
    failed = await run_job(kintsugi_db, key, "other")
    simulated = await run_job(kintsugi_db, key, "sim-1")
    assert (succeeded["status"], failed["status"], simulated["status"]) == ("succeeded", "failed", "succeeded")

    rows = await listed(kintsugi_db, key, 3)

    by_id = {row["job_id"]: row for row in rows}
    assert set(by_id) == {succeeded["id"], failed["id"], simulated["id"]}
    row = by_id[failed["id"]]
    assert (row["tenant_id"], row["status"], row["model"]) == (tenant, "failed", "other")
    started, closed = datetime.fromisoformat(row["started_at"]), datetime.fromisoformat(row["closed_at"])
    assert row["duration_ms"] == round((closed - started).total_seconds() * 1000) >= 0

    assert [r["job_id"] for r in await listed(kintsugi_db, key, 1, status="failed")] == [failed["id"]]
    assert [r["job_id"] for r in await listed(kintsugi_db, key, 1, model="sim-1")] == [simulated["id"]]
    since = await listed(kintsugi_db, key, 2, **{"from": row["started_at"]})
    assert {r["job_id"] for r in since} == {failed["id"], simulated["id"]}
    before = await listed(kintsugi_db, key, 1, to=row["started_at"])
    assert [r["job_id"] for r in before] == [succeeded["id"]]

    first = (await api.get("/v1/traces", params={"limit": 2}, headers=key)).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = (await api.get("/v1/traces", params={"limit": 2, "cursor": first["next_cursor"]}, headers=key)).json()
    assert {r["job_id"] for r in first["data"] + rest["data"]} == set(by_id) and rest["next_cursor"] is None

    stranger, _ = await new_key(kintsugi_db, "admin")
    assert (await api.get("/v1/traces", headers=stranger)).json()["data"] == []
    foreign = await api.get("/v1/traces", params={"tenant_id": tenant}, headers=stranger)
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "tenant_not_found"
    platform = await listed(kintsugi_db, kintsugi_db.admin, 3, tenant_id=tenant)
    assert {r["job_id"] for r in platform} == set(by_id)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"status": "exploded"}, "validation_error"),
        ({"model": "x' OR WorkflowType != '"}, "validation_error"),
        ({"from": "yesterday"}, "validation_error"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "invalid_filter"),
        ({"to": "0001-01-01T00:00:00+01:00"}, "invalid_filter"),
        ({"limit": 0}, "validation_error"),
    ],
)
async def test_a_bad_trace_list_filter_is_a_422_with_a_code(
    kintsugi_db: Harness, params: dict[str, Any], code: str
) -> None:
    response = await kintsugi_db.http.get("/v1/traces", params=params, headers=kintsugi_db.admin)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


async def test_trace_export_as_json_and_as_otlp_a_collector_decodes(kintsugi_db: Harness) -> None:
    api = kintsugi_db.http
    key, _ = await new_key(kintsugi_db, "viewer")
    job = (await kintsugi_db.submit({"model": "primary", "messages": HELLO}, wait=10)).json()
    assert job["status"] == "succeeded"

    as_json = await api.get(f"/v1/traces/{job['id']}/export", headers=kintsugi_db.admin)
    as_otlp = await api.get(f"/v1/traces/{job['id']}/export", params={"format": "otlp"}, headers=kintsugi_db.admin)

    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-disposition"] == f'attachment; filename="{job["id"]}.json.json"'
    shown = await api.get(f"/v1/jobs/{job['id']}/trace", headers=kintsugi_db.admin)
    assert Trace.model_validate(as_json.json()) == Trace.model_validate(shown.json())
    assert as_otlp.status_code == 200, as_otlp.text
    assert as_otlp.headers["content-type"] == "application/json"
    assert as_otlp.headers["content-disposition"].startswith("attachment;")
    request = decode(as_otlp.json())
    [resource] = request.resource_spans
    assert attrs(resource.resource.attributes)["kintsugi.job_id"] == job["id"]
    assert [span.name for span in spans_of(request)] == [
        "LLMJobWorkflow",
        "preflight",
        f"call up/{kintsugi_db.model('a')}",
        "postflight",
    ]

    bad = await api.get(f"/v1/traces/{job['id']}/export", params={"format": "xml"}, headers=kintsugi_db.admin)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    for format in ("json", "otlp"):
        foreign = await api.get(f"/v1/traces/{job['id']}/export", params={"format": format}, headers=key)
        assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "job_not_found"
