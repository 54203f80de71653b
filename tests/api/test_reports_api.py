"""`GET /v1/metrics/summary`, `GET /v1/errors` and `GET /v1/events` on SQLite and PostgreSQL, from rows written by
the queries the workflow's bookkeeping uses: the numbers a person would check, the window, tenancy, bad input."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from settings import Settings
from store import queries
from store.models import DEFAULT_TENANT_ID
from tests.support.common import SHIPPED_ROUTES

ADMIN = {"Authorization": "Bearer reports-admin-key"}
NOW = datetime.now(UTC)


@pytest.fixture
async def api(migrated_db_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API alone: reports read the database, never Temporal."""
    settings = Settings(
        env="test", admin_api_key="reports-admin-key", database_url=migrated_db_url, routes_file=SHIPPED_ROUTES
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://k") as http:
        yield app, http


async def new_tenant(http: httpx.AsyncClient, *roles: str) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """A tenant and a key of each role asked for: (key id, request headers)."""
    tenant = (await http.post("/v1/tenants", json={"name": "acme"}, headers=ADMIN)).json()["id"]
    keys = []
    for role in roles:
        key = (await http.post("/v1/keys", json={"tenant_id": tenant, "role": role}, headers=ADMIN)).json()
        keys.append((key["id"], {"Authorization": f"Bearer {key['key']}"}))
    return tenant, keys


Step = tuple[str, datetime, dict[str, Any]]
"""An event: its type, when it happened, its payload."""


async def events(app: FastAPI, tenant_id: str, job_id: str, key_id: str | None, *steps: Step) -> None:
    """A job's lifecycle events, written as the workflow's `record_events` writes them."""
    run = uuid.uuid4().hex
    rows = [
        {"event_key": f"{job_id}:{run}:{seq}:{type}", "tenant_id": tenant_id, "job_id": job_id, "key_id": key_id,
         "type": type, "payload": payload, "created_at": at}
        for seq, (type, at, payload) in enumerate(steps, start=1)
    ]  # fmt: skip
    async with app.state.sessions() as session, session.begin():
        await queries.insert_events(session, rows)


async def job(
    app: FastAPI, tenant_id: str, key_id: str | None, started: datetime, end: str, took_ms: float, **payload: Any
) -> str:
    """A job that started at `started` and, `took_ms` later, ended with the event `end` (its payload given)."""
    job_id = f"job_{uuid.uuid4().hex}"
    await events(
        app, tenant_id, job_id, key_id,
        ("job.started", started, {"model": "fast"}),
        (end, started + timedelta(milliseconds=took_ms), payload),
    )  # fmt: skip
    return job_id


async def bill(app: FastAPI, tenant_id: str, job_id: str, key_id: str | None, **row: Any) -> None:
    fields = {"provider": "up", "model": "m-a", "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.0,
              "created_at": NOW - timedelta(minutes=1), **row}  # fmt: skip
    async with app.state.sessions() as session, session.begin():
        await queries.insert_cost_log(
            session, idempotency_key=f"{job_id}:1", job_id=job_id, tenant_id=tenant_id, key_id=key_id, **fields
        )


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


async def test_the_summary_counts_jobs_sums_usage_and_gives_latency_percentiles(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = api
    tenant, [(key, viewer)] = await new_tenant(http, "viewer")
    other, _ = await new_tenant(http)
    answered = await job(app, tenant, key, ago(30), "job.succeeded", 100)
    await job(app, tenant, key, ago(20), "job.failed", 300, code="all_deployments_failed", message="down")
    cached = await job(app, tenant, None, ago(10), "job.cache_hit", 50)
    await job(app, tenant, key, ago(8), "job.cancelled", 200)
    parked = await job(app, tenant, key, ago(5), "job.parked", 1000)
    old = await job(app, tenant, key, ago(120), "job.succeeded", 5)  # before the window
    foreign = await job(app, other, None, ago(5), "job.succeeded", 7)
    await bill(app, tenant, answered, key, cost_usd=0.5, upstream_latency_ms=80.0)
    await bill(app, tenant, cached, None, outcome="cache_hit", saved_usd=0.5)
    await bill(app, tenant, parked, key, model="m-b", cost_usd=None, price_known=False, upstream_latency_ms=40.0)
    await bill(app, tenant, old, key, cost_usd=9.0, created_at=ago(120))
    await bill(app, other, foreign, None, cost_usd=7.0)

    response = await http.get("/v1/metrics/summary", params={"window": "1h"}, headers=viewer)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["window"], body["tenant_id"]) == ("1h", tenant)
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert end - start == timedelta(hours=1)
    assert body["jobs"] == {"started": 5, "succeeded": 2, "failed": 1, "cancelled": 1, "parked": 1, "cache_hits": 1}
    usage = {k: body[k] for k in ("calls", "input_tokens", "output_tokens", "cost_usd", "unpriced_calls")}
    assert usage == {"calls": 3, "input_tokens": 30, "output_tokens": 15, "cost_usd": 0.5, "unpriced_calls": 1}
    # Job latencies 50, 100, 200, 300 (the parked job has not ended): nearest ranks 2, 4, 4.
    assert body["job_latency_ms"] == {"p50": 100.0, "p95": 300.0, "p99": 300.0, "count": 4}
    assert body["upstream_latency_ms"] == {"p50": 40.0, "p95": 80.0, "p99": 80.0, "count": 2}
    assert body["by_model"] == [
        {"model": "up/m-a", "jobs": 2, "calls": 2, "input_tokens": 20, "output_tokens": 10, "cost_usd": 0.5,
         "unpriced_calls": 0, "upstream_latency_ms": {"p50": 80.0, "p95": 80.0, "p99": 80.0, "count": 1}},
        {"model": "up/m-b", "jobs": 1, "calls": 1, "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.0,
         "unpriced_calls": 1, "upstream_latency_ms": {"p50": 40.0, "p95": 40.0, "p99": 40.0, "count": 1}},
    ]  # fmt: skip
    by_key = {row["group"]: row for row in body["by_key"]}
    assert [row["group"] for row in body["by_key"]] == [key, "(admin)"]  # by cost
    assert by_key[key]["jobs"] == {"started": 4, "succeeded": 1, "failed": 1, "cancelled": 1, "parked": 1,
                                   "cache_hits": 0}  # fmt: skip
    assert (by_key[key]["calls"], by_key[key]["cost_usd"], by_key[key]["unpriced_calls"]) == (2, 0.5, 1)
    assert by_key[key]["job_latency_ms"] == {"p50": 200.0, "p95": 300.0, "p99": 300.0, "count": 3}
    assert by_key["(admin)"]["jobs"]["cache_hits"] == 1
    assert by_key["(admin)"]["job_latency_ms"]["p50"] == 50.0
    assert body["by_tenant"] is None  # only the platform admin sees other tenants


async def test_the_platform_admin_sees_every_tenant_and_names_one(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = api
    tenant, [(_, tenant_admin)] = await new_tenant(http, "admin")
    other, _ = await new_tenant(http)
    first = await job(app, tenant, None, ago(3), "job.succeeded", 10)
    await job(app, other, None, ago(3), "job.failed", 20, code="unknown_model", message="no route")
    await bill(app, tenant, first, None, cost_usd=0.25)

    named = (await http.get("/v1/metrics/summary", params={"tenant_id": tenant}, headers=ADMIN)).json()
    own = (await http.get("/v1/metrics/summary", headers=ADMIN)).json()
    foreign = await http.get("/v1/metrics/summary", params={"tenant_id": other}, headers=tenant_admin)

    assert (named["tenant_id"], named["jobs"]["succeeded"], named["cost_usd"]) == (tenant, 1, 0.25)
    assert (own["tenant_id"], own["jobs"]["started"]) == (DEFAULT_TENANT_ID, 0)
    by_tenant = {row["group"]: row for row in named["by_tenant"]}
    assert set(by_tenant) == {tenant, other}
    assert (by_tenant[tenant]["jobs"]["succeeded"], by_tenant[tenant]["cost_usd"]) == (1, 0.25)
    assert (by_tenant[other]["jobs"]["failed"], by_tenant[other]["job_latency_ms"]["p99"]) == (1, 20.0)
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "tenant_not_found")


async def test_errors_are_grouped_by_code_with_the_newest_examples(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = api
    tenant, [(_, viewer)] = await new_tenant(http, "viewer")
    other, _ = await new_tenant(http)
    down = [
        await job(app, tenant, None, ago(50 - i), "job.failed", 10, code="all_deployments_failed", message=f"down {i}")
        for i in range(6)
    ]
    # The first job, run again, fails again last: one example, placed by its newest failure.
    again = {"code": "all_deployments_failed", "message": "again"}
    await events(app, tenant, down[0], None, ("job.failed", ago(10), again))
    refused = await job(app, tenant, None, ago(20), "job.failed", 1, code="budget_exceeded", message="over budget")
    await job(app, tenant, None, ago(90), "job.failed", 1, code="old_code", message="before the window")
    await job(app, other, None, ago(5), "job.failed", 1, code="theirs", message="another tenant's")
    await job(app, tenant, None, ago(5), "job.succeeded", 1)

    response = await http.get("/v1/errors", params={"window": "1h"}, headers=viewer)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window"] == "1h"
    assert [(g["code"], g["count"]) for g in body["data"]] == [("all_deployments_failed", 7), ("budget_exceeded", 1)]
    flood, budget = body["data"]
    assert flood["example_job_ids"] == [down[0], down[5], down[4], down[3], down[2]]
    assert flood["message"] == "again"
    assert datetime.fromisoformat(flood["last_seen_at"]) == ago(10)
    assert (budget["example_job_ids"], budget["message"]) == ([refused], "over budget")


async def test_events_are_listed_newest_first_filtered_and_paged(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = api
    tenant, [(_, viewer)] = await new_tenant(http, "viewer")
    other, _ = await new_tenant(http)
    first = await job(app, tenant, None, ago(30), "job.succeeded", 10, model="m-a")
    second = await job(app, tenant, None, ago(20), "job.failed", 10, code="x", message="y")
    await events(app, tenant, second, None, ("policy.refused", ago(19), {"code": "guardrail_blocked"}))
    theirs = await job(app, other, None, ago(10), "job.succeeded", 10)

    async def listed(**params: Any) -> list[tuple[str, str]]:
        response = await http.get("/v1/events", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        return [(e["job_id"], e["type"]) for e in response.json()["data"]]

    everything = await listed()
    assert everything == [(second, "policy.refused"), (second, "job.failed"), (second, "job.started"),
                          (first, "job.succeeded"), (first, "job.started")]  # fmt: skip
    assert await listed(type="job.") == [e for e in everything if e[1].startswith("job.")]
    assert await listed(type="job.failed") == [(second, "job.failed")]
    assert await listed(type="job") == []  # a prefix ends in `.`: a bare word is one (unknown) type
    assert await listed(type="job_") == []  # `_` is not a LIKE wildcard here
    assert await listed(job_id=first) == [(first, "job.succeeded"), (first, "job.started")]
    assert await listed(job_id=theirs) == []  # another tenant's job is not there
    window = {"from": ago(25).isoformat(), "to": ago(19).isoformat()}
    assert await listed(**window) == [(second, "job.failed"), (second, "job.started")]
    naive = {"from": ago(25).replace(tzinfo=None).isoformat()}  # read as UTC
    assert len(await listed(**naive)) == 3

    page = (await http.get("/v1/events", params={"limit": 2}, headers=viewer)).json()
    seen = [(e["job_id"], e["type"]) for e in page["data"]]
    while page["next_cursor"]:
        page = (await http.get("/v1/events", params={"limit": 2, "cursor": page["next_cursor"]}, headers=viewer)).json()
        seen += [(e["job_id"], e["type"]) for e in page["data"]]
    assert seen == everything

    row = (await http.get("/v1/events", params={"limit": 1}, headers=viewer)).json()["data"][0]
    assert set(row) == {"id", "type", "tenant_id", "job_id", "payload", "created_at"}
    assert (row["tenant_id"], row["payload"]) == (tenant, {"code": "guardrail_blocked"})


async def test_the_platform_admin_reads_another_tenants_events(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = api
    _, [(_, tenant_admin)] = await new_tenant(http, "admin")
    other, _ = await new_tenant(http)
    theirs = await job(app, other, None, ago(10), "job.succeeded", 10)

    as_platform = await http.get("/v1/events", params={"tenant_id": other}, headers=ADMIN)
    as_tenant = await http.get("/v1/events", params={"tenant_id": other}, headers=tenant_admin)

    assert [e["job_id"] for e in as_platform.json()["data"]] == [theirs, theirs]
    assert (as_tenant.status_code, as_tenant.json()["error"]["code"]) == (404, "tenant_not_found")
    assert (await http.get("/v1/events")).status_code == 401


@pytest.mark.parametrize("path", ["/v1/metrics/summary", "/v1/errors"])
@pytest.mark.parametrize("window", ["", "1", "0h", "1y", "1.5h", "400d", "x" * 40])
async def test_a_bad_window_is_422_naming_it(api: tuple[FastAPI, httpx.AsyncClient], path: str, window: str) -> None:
    _, http = api

    response = await http.get(path, params={"window": window}, headers=ADMIN)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["errors"][0]["loc"] == ["query", "window"]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"cursor": "not a cursor"}, 400, "invalid_cursor"),
        ({"cursor": "OTk5OTk5OTk5OTk5"}, 400, "invalid_cursor"),  # "999999999999": past any id
        ({"limit": 0}, 422, "validation_error"),
        ({"limit": 201}, 422, "validation_error"),
        ({"from": "yesterday"}, 422, "validation_error"),
        ({"to": "9999-12-31T23:59:59-05:00"}, 422, "validation_error"),  # year 10000 in UTC
        ({"job_id": "job_\x00"}, 422, "validation_error"),  # PostgreSQL text holds no NUL
        ({"type": "job.\x00"}, 422, "validation_error"),
    ],
)
async def test_bad_event_filters_are_refused_with_a_code(
    api: tuple[FastAPI, httpx.AsyncClient], params: dict[str, Any], status: int, code: str
) -> None:
    _, http = api

    response = await http.get("/v1/events", params=params, headers=ADMIN)

    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
