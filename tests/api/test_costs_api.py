"""`GET /v1/costs` on SQLite and PostgreSQL: the report's shape, its window, bad input, and tenancy (a tenant's
spend is never another's to read, but the platform admin's)."""

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
from store.models import DEFAULT_TENANT_ID, ModelCostLog
from tests.support.common import SHIPPED_ROUTES

ADMIN = {"Authorization": "Bearer costs-admin-key"}


@pytest.fixture
async def api(migrated_db_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API alone: spend needs the database, not Temporal."""
    settings = Settings(
        env="test", admin_api_key="costs-admin-key", database_url=migrated_db_url, routes_file=SHIPPED_ROUTES
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://k") as http:
        yield app, http


async def new_tenant(http: httpx.AsyncClient, *roles: str) -> tuple[str, list[dict[str, str]]]:
    """A tenant and a key of each role asked for, as request headers."""
    tenant = (await http.post("/v1/tenants", json={"name": "acme"}, headers=ADMIN)).json()["id"]
    keys = []
    for role in roles:
        key = await http.post("/v1/keys", json={"tenant_id": tenant, "role": role}, headers=ADMIN)
        keys.append({"Authorization": f"Bearer {key.json()['key']}"})
    return tenant, keys


async def bill(app: FastAPI, tenant_id: str, *rows: dict[str, Any]) -> None:
    async with app.state.sessions() as session, session.begin():
        for row in rows:
            job_id = f"job_{uuid.uuid4().hex}"
            fields = {"provider": "up", "model": "m-a", "input_tokens": 10, "output_tokens": 1, **row}
            session.add(ModelCostLog(idempotency_key=f"{job_id}:1", job_id=job_id, tenant_id=tenant_id, **fields))


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


async def test_a_viewer_reads_its_tenants_spend_by_model(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = api
    tenant, (viewer,) = await new_tenant(http, "viewer")
    other, _ = await new_tenant(http)
    await bill(
        app,
        tenant,
        {"model": "m-a", "cost_usd": 0.5, "created_at": at(1), "route": "fast", "key_id": "key_x"},
        {"model": "m-b", "cost_usd": None, "price_known": False, "created_at": at(2)},
        {"model": "m-b", "cost_usd": 0.0, "outcome": "cache_hit", "saved_usd": 0.3, "created_at": at(2)},
        {"model": "m-a", "cost_usd": 9.0, "created_at": at(5)},  # after `to`
    )
    await bill(app, other, {"model": "m-a", "cost_usd": 7.0, "created_at": at(1)})

    response = await http.get("/v1/costs", params={"group_by": "model", "from": "2026-03-01", "to": "2026-03-05"},
                              headers=viewer)  # fmt: skip

    assert response.status_code == 200, response.text
    common = {"input_tokens": 10, "output_tokens": 1}
    assert response.json() == {
        "group_by": "model",
        "from": "2026-03-01T00:00:00Z",
        "to": "2026-03-05T00:00:00Z",
        "data": [
            {"group": "up/m-a", "spend_usd": 0.5, "calls": 1, **common, "unpriced_calls": 0, "cache_hits": 0,
             "saved_usd": 0.0},
            {"group": "up/m-b", "spend_usd": 0.0, "calls": 2, "input_tokens": 20, "output_tokens": 2,
             "unpriced_calls": 1, "cache_hits": 1, "saved_usd": 0.3},
        ],
        "total": {"spend_usd": 0.5, "calls": 3, "input_tokens": 30, "output_tokens": 3, "unpriced_calls": 1,
                  "cache_hits": 1, "saved_usd": 0.3},
    }  # fmt: skip


async def test_by_default_the_report_covers_the_last_30_days(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = api
    tenant, (viewer,) = await new_tenant(http, "viewer")
    now = datetime.now(UTC)
    await bill(
        app,
        tenant,
        {"cost_usd": 1.0, "created_at": now - timedelta(days=10)},
        {"cost_usd": 2.0, "created_at": now - timedelta(days=31)},
    )

    body = (await http.get("/v1/costs", headers=viewer)).json()

    assert body["group_by"] == "day"
    assert [(g["group"], g["spend_usd"]) for g in body["data"]] == [
        ((now - timedelta(days=10)).date().isoformat(), 1.0)
    ]
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert end - start == timedelta(days=30)
    assert abs(end - now) < timedelta(minutes=1)


async def test_the_platform_admin_reads_any_tenant_and_nobody_else_does(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = api
    tenant, (viewer,) = await new_tenant(http, "viewer")
    _, (other_admin,) = await new_tenant(http, "admin")
    await bill(app, tenant, {"cost_usd": 0.25, "created_at": datetime.now(UTC), "route": "fast"})
    await bill(app, DEFAULT_TENANT_ID, {"cost_usd": 4.0, "created_at": datetime.now(UTC), "route": "fast"})

    def spend(response: httpx.Response) -> float:
        assert response.status_code == 200, response.text
        return float(response.json()["total"]["spend_usd"])

    as_platform = await http.get("/v1/costs", params={"tenant_id": tenant, "group_by": "route"}, headers=ADMIN)
    own = await http.get("/v1/costs", params={"tenant_id": tenant}, headers=viewer)
    platform_own = await http.get("/v1/costs", headers=ADMIN)
    foreign = await http.get("/v1/costs", params={"tenant_id": tenant}, headers=other_admin)
    missing = await http.get("/v1/costs", params={"tenant_id": "ten_missing"}, headers=ADMIN)
    # PostgreSQL text cannot hold a NUL: no tenant has this id, and the database is not asked.
    impossible = await http.get("/v1/costs", params={"tenant_id": "ten_\x00"}, headers=ADMIN)

    assert [g["group"] for g in as_platform.json()["data"]] == ["fast"]
    assert (spend(as_platform), spend(own), spend(platform_own)) == (0.25, 0.25, 4.0)
    for refused in (foreign, missing, impossible):
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "tenant_not_found")
    assert spend(await http.get("/v1/costs", headers=other_admin)) == 0.0
    assert (await http.get("/v1/costs")).status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": "provider"},
        {"from": "yesterday"},
        {"to": "2026-13-01"},
        {"from": "2026-03-02", "to": "2026-03-01"},
        {"from": "2026-03-01T12:01:00+05:00", "to": "2026-03-01T07:00:00Z"},
        # Valid dates whose window reaches outside the years a datetime holds once read in UTC.
        {"to": "0001-01-05"},
        {"from": "0001-01-01T00:00:00+01:00"},
        {"to": "9999-12-31T23:59:59-05:00"},
    ],
)
async def test_bad_parameters_are_422_in_our_error_shape(
    api: tuple[FastAPI, httpx.AsyncClient], params: dict[str, str]
) -> None:
    _, http = api

    response = await http.get("/v1/costs", params=params, headers=ADMIN)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["errors"][0]["loc"][:2] == ["query", next(iter(params))]


async def test_a_datetime_with_an_offset_is_read_in_utc(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = api
    await bill(
        app, DEFAULT_TENANT_ID, {"cost_usd": 1.5, "created_at": at(1, 0)}, {"cost_usd": 3.0, "created_at": at(1, 6)}
    )

    # 05:00 at +05:00 is midnight UTC: the first row is in, the second (06:00 UTC) is at `to`, out.
    response = await http.get(
        "/v1/costs", params={"from": "2026-03-01T05:00:00+05:00", "to": "2026-03-01T06:00:00Z"}, headers=ADMIN
    )

    assert response.json()["from"] == "2026-03-01T00:00:00Z"
    assert response.json()["total"]["spend_usd"] == 1.5


async def test_the_widest_window_a_datetime_holds_is_answered(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = api
    await bill(app, DEFAULT_TENANT_ID, {"cost_usd": 1.5, "created_at": at(1)})

    response = await http.get(
        "/v1/costs", params={"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59.999999"}, headers=ADMIN
    )

    assert response.status_code == 200, response.text
    assert response.json()["total"]["spend_usd"] == 1.5
