"""`/v1/flags` and `/v1/audit` on SQLite and PostgreSQL: who may set which scope, sources, the audit trail."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from settings import Settings
from tests.support.common import SHIPPED_ROUTES

ADMIN = {"Authorization": "Bearer flags-admin-key"}
EXPORTER_ENV = ("LANGFUSE_BASE_URL", "KINTSUGI_RUDDERSTACK_DATA_PLANE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT")


@pytest.fixture
async def api(
    migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API alone (flags need no Temporal), with no exporter configured."""
    for name in EXPORTER_ENV:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(
        env="test", admin_api_key="flags-admin-key", database_url=migrated_db_url, routes_file=SHIPPED_ROUTES
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://k") as http:
        yield app, http


@pytest.fixture
def http(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


async def new_key(http: httpx.AsyncClient, role: str, tenant_id: str | None = None) -> tuple[dict[str, str], str]:
    """A key of `role` (in a new tenant unless one is named): its headers and its tenant's id."""
    if tenant_id is None:
        tenant = await http.post("/v1/tenants", json={"name": "acme"}, headers=ADMIN)
        assert tenant.status_code == 201, tenant.text
        tenant_id = tenant.json()["id"]
    key = await http.post("/v1/keys", json={"tenant_id": tenant_id, "role": role}, headers=ADMIN)
    assert key.status_code == 201, key.text
    return {"Authorization": f"Bearer {key.json()['key']}"}, tenant_id


async def flags_of(http: httpx.AsyncClient, headers: dict[str, str], **params: str) -> dict[str, dict[str, object]]:
    response = await http.get("/v1/flags", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return {flag["key"]: flag for flag in response.json()["data"]}


async def test_list_shows_every_flag_with_its_default_and_status(http: httpx.AsyncClient) -> None:
    viewer, _ = await new_key(http, "viewer")

    flags = await flags_of(http, viewer)

    assert len(flags) == 16
    assert flags["track_model_costs"] == {
        "key": "track_model_costs",
        "enabled": True,
        "source": "default",
        "rollout_percent": 100,
        "description": "write a priced cost row for every model call",
        "built": True,
    }
    assert flags["enable_response_cache"]["enabled"] is False
    assert flags["enable_langfuse_export"]["enabled"] is False  # no endpoint configured
    assert flags["enable_policy_engine"]["built"] is True
    assert flags["enable_self_healing"]["built"] is False


async def test_platform_admin_sets_the_global_value_and_tenants_follow_it(http: httpx.AsyncClient) -> None:
    viewer, _ = await new_key(http, "viewer")

    put = await http.put("/v1/flags/track_model_costs", json={"enabled": False}, headers=ADMIN)

    assert put.status_code == 200, put.text
    assert put.json() | {"description": ""} == {
        "key": "track_model_costs",
        "enabled": False,
        "source": "global",
        "rollout_percent": 100,
        "description": "",
        "built": True,
    }
    flag = (await flags_of(http, viewer))["track_model_costs"]
    assert (flag["enabled"], flag["source"]) == (False, "global")


async def test_tenant_admin_overrides_its_own_tenant_only(http: httpx.AsyncClient) -> None:
    admin, tenant = await new_key(http, "admin")
    neighbour, _ = await new_key(http, "viewer")
    await http.put("/v1/flags/enable_response_cache", json={"enabled": False}, headers=ADMIN)

    put = await http.put("/v1/flags/enable_response_cache", json={"enabled": True}, headers=admin)
    named = await http.put(
        "/v1/flags/enable_smart_routing",
        json={"enabled": True, "tenant_id": tenant, "rollout_percent": 100},
        headers=admin,
    )

    assert (put.status_code, put.json()["enabled"], put.json()["source"]) == (200, True, "tenant")
    assert (named.status_code, named.json()["source"]) == (200, "tenant")
    mine = await flags_of(http, admin)
    assert (mine["enable_response_cache"]["enabled"], mine["enable_response_cache"]["source"]) == (True, "tenant")
    theirs = await flags_of(http, neighbour)
    assert (theirs["enable_response_cache"]["enabled"], theirs["enable_response_cache"]["source"]) == (False, "global")
    assert theirs["enable_smart_routing"]["source"] == "default"
    platform = await flags_of(http, ADMIN, tenant_id=tenant)
    assert platform["enable_response_cache"]["source"] == "tenant"


async def test_platform_admin_sets_a_tenants_override_and_drops_it(http: httpx.AsyncClient) -> None:
    viewer, tenant = await new_key(http, "viewer")

    put = await http.put("/v1/flags/enable_reroute", json={"enabled": False, "tenant_id": tenant}, headers=ADMIN)
    overridden = (await flags_of(http, viewer))["enable_reroute"]
    dropped = await http.delete("/v1/flags/enable_reroute", params={"tenant_id": tenant}, headers=ADMIN)

    assert (put.status_code, put.json()["source"], overridden["enabled"]) == (200, "tenant", False)
    assert dropped.status_code == 200, dropped.text
    assert (dropped.json()["enabled"], dropped.json()["source"]) == (True, "default")
    assert (await flags_of(http, viewer))["enable_reroute"]["source"] == "default"


async def test_a_rollout_share_is_reported_and_stable(http: httpx.AsyncClient) -> None:
    put = await http.put("/v1/flags/enable_smart_routing", json={"enabled": True, "rollout_percent": 50}, headers=ADMIN)
    viewer, _ = await new_key(http, "viewer")

    first = (await flags_of(http, viewer))["enable_smart_routing"]
    second = (await flags_of(http, viewer))["enable_smart_routing"]

    assert (put.json()["enabled"], put.json()["rollout_percent"]) == (True, 50)
    assert first == second
    assert (first["source"], first["rollout_percent"]) == ("global", 50)


async def test_tenant_admin_cannot_reach_another_tenant(http: httpx.AsyncClient) -> None:
    admin, _ = await new_key(http, "admin")
    _, other = await new_key(http, "viewer")

    put = await http.put("/v1/flags/enable_reroute", json={"enabled": False, "tenant_id": other}, headers=admin)
    delete = await http.delete("/v1/flags/enable_reroute", params={"tenant_id": other}, headers=admin)
    read = await http.get("/v1/flags", params={"tenant_id": other}, headers=admin)
    missing = await http.get("/v1/flags", params={"tenant_id": "ten_missing"}, headers=ADMIN)

    for response in (put, delete, read, missing):
        assert (response.status_code, response.json()["error"]["code"]) == (404, "tenant_not_found")
    # Nothing was written: the other tenant still runs on the defaults, and no audit entry names it.
    assert (await flags_of(http, ADMIN, tenant_id=other))["enable_reroute"]["source"] == "default"
    assert (await http.get("/v1/audit", headers=ADMIN)).json()["data"] == []


async def test_a_tenant_id_no_tenant_can_have_is_404_and_writes_nothing(http: httpx.AsyncClient) -> None:
    impossible = "ten_\x00"  # PostgreSQL text cannot hold a NUL: no tenant has this id

    read = await http.get("/v1/flags", params={"tenant_id": impossible}, headers=ADMIN)
    put = await http.put("/v1/flags/enable_reroute", json={"enabled": False, "tenant_id": impossible}, headers=ADMIN)
    delete = await http.delete("/v1/flags/enable_reroute", params={"tenant_id": impossible}, headers=ADMIN)

    for response in (read, put, delete):
        assert (response.status_code, response.json()["error"]["code"]) == (404, "tenant_not_found")
    assert (await http.get("/v1/audit", headers=ADMIN)).json()["data"] == []


async def test_tenant_admin_without_tenant_id_never_changes_the_global_value(http: httpx.AsyncClient) -> None:
    admin, tenant = await new_key(http, "admin")
    bystander, _ = await new_key(http, "viewer")

    await http.put("/v1/flags/enable_reroute", json={"enabled": False}, headers=admin)
    dropped = await http.delete("/v1/flags/enable_reroute", headers=admin)

    assert dropped.json()["source"] == "default"
    assert (await flags_of(http, bystander))["enable_reroute"]["source"] == "default"
    audit = (await http.get("/v1/audit", headers=ADMIN)).json()["data"]
    assert [(entry["action"], entry["tenant_id"]) for entry in audit] == [("flag.delete", tenant), ("flag.set", tenant)]


async def test_app_and_viewer_keys_cannot_set_flags(http: httpx.AsyncClient) -> None:
    app_key, tenant = await new_key(http, "app")
    viewer, _ = await new_key(http, "viewer", tenant)

    for headers in (app_key, viewer):
        put = await http.put("/v1/flags/enable_reroute", json={"enabled": False}, headers=headers)
        delete = await http.delete("/v1/flags/enable_reroute", headers=headers)
        audit = await http.get("/v1/audit", headers=headers)
        for response in (put, delete, audit):
            assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    assert (await http.get("/v1/flags")).status_code == 401


async def test_unknown_flag_is_404_listing_the_known_ones(http: httpx.AsyncClient) -> None:
    put = await http.put("/v1/flags/enable_magic", json={"enabled": True}, headers=ADMIN)
    delete = await http.delete("/v1/flags/enable_magic", headers=ADMIN)

    for response in (put, delete):
        assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_flag")
    assert "track_model_costs" in put.json()["error"]["details"]["flags"]
    assert (await http.get("/v1/audit", headers=ADMIN)).json()["data"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"enabled": "yes"},
        {"enabled": True, "rollout_percent": 101},
        {"enabled": True, "rollout_percent": -1},
        {"enabled": True, "rollout_percent": 50.5},
        {"enabled": True, "tenant_id": ""},
        {"enabled": True, "scope": "global"},
    ],
)
async def test_a_bad_body_is_422_and_writes_nothing(http: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await http.put("/v1/flags/enable_reroute", json=body, headers=ADMIN)

    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")
    assert (await flags_of(http, ADMIN))["enable_reroute"]["source"] == "default"
    assert (await http.get("/v1/audit", headers=ADMIN)).json()["data"] == []


async def test_audit_lists_changes_newest_first_scoped_to_the_tenant(http: httpx.AsyncClient) -> None:
    admin, tenant = await new_key(http, "admin")
    other_admin, other = await new_key(http, "admin")
    await http.put("/v1/flags/enable_reroute", json={"enabled": False, "rollout_percent": 20}, headers=ADMIN)
    await http.put("/v1/flags/enable_reroute", json={"enabled": True}, headers=admin)
    await http.put("/v1/flags/enable_cron_backoff", json={"enabled": False}, headers=admin)
    await http.put("/v1/flags/enable_self_healing", json={"enabled": False}, headers=other_admin)

    mine = await http.get("/v1/audit", headers=admin, params={"limit": 2})
    rest = await http.get("/v1/audit", headers=admin, params={"limit": 2, "cursor": mine.json()["next_cursor"]})
    everything = await http.get("/v1/audit", headers=ADMIN)

    assert mine.status_code == 200, mine.text
    page = mine.json()["data"] + rest.json()["data"]
    assert [(e["target"], e["tenant_id"]) for e in page] == [
        ("enable_cron_backoff", tenant),
        ("enable_reroute", tenant),
        ("enable_reroute", None),  # the global change: it changes this tenant too
    ]
    assert rest.json()["next_cursor"] is None
    assert page[1]["before"] is None and page[1]["after"] == {"enabled": True, "rollout_percent": 100}
    assert page[2]["after"] == {"enabled": False, "rollout_percent": 20}
    assert page[2]["actor_key_id"] is None and page[0]["actor_key_id"].startswith("key_")
    assert {e["tenant_id"] for e in everything.json()["data"]} == {tenant, other, None}
    assert set(page[0]) == {"id", "tenant_id", "actor_key_id", "action", "target", "before", "after", "created_at"}


async def test_a_cursor_this_api_did_not_hand_out_is_400(http: httpx.AsyncClient) -> None:
    for cursor in ("%%%", "YWJj"):  # not base64; base64 of "abc"
        response = await http.get("/v1/audit", headers=ADMIN, params={"cursor": cursor})
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_cursor")


@pytest.mark.parametrize("before_id", ["9" * 30, str(2**63), str(2**31)])
async def test_a_cursor_past_any_id_the_log_can_hold_is_400(http: httpx.AsyncClient, before_id: str) -> None:
    cursor = base64.urlsafe_b64encode(before_id.encode()).decode()

    response = await http.get("/v1/audit", headers=ADMIN, params={"cursor": cursor})

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_cursor")


async def test_a_cursor_at_the_largest_id_the_log_can_hold_lists_everything(http: httpx.AsyncClient) -> None:
    await http.put("/v1/flags/enable_reroute", json={"enabled": False}, headers=ADMIN)
    cursor = base64.urlsafe_b64encode(str(2**31 - 1).encode()).decode()

    response = await http.get("/v1/audit", headers=ADMIN, params={"cursor": cursor})

    assert response.status_code == 200, response.text
    assert [entry["target"] for entry in response.json()["data"]] == ["enable_reroute"]


async def test_a_change_in_another_process_shows_within_the_ttl(http: httpx.AsyncClient, migrated_db_url: str) -> None:
    """Two API replicas on one database: the one that made the change shows it at once, the other once its
    cache has expired (a 1 s TTL here instead of 5 s)."""
    other = create_app(
        Settings(
            env="test",
            admin_api_key="flags-admin-key",
            database_url=migrated_db_url,
            routes_file=SHIPPED_ROUTES,
            flag_cache_ttl_s=1.0,
        )
    )
    transport = httpx.ASGITransport(app=other)
    async with (
        other.router.lifespan_context(other),
        httpx.AsyncClient(transport=transport, base_url="http://k") as replica,
    ):
        assert (await flags_of(replica, ADMIN))["enable_reroute"]["enabled"] is True  # read, and cached for 1 s
        await http.put("/v1/flags/enable_reroute", json={"enabled": False}, headers=ADMIN)

        here = (await flags_of(http, ADMIN))["enable_reroute"]["enabled"]
        there_at_once = (await flags_of(replica, ADMIN))["enable_reroute"]["enabled"]
        await asyncio.sleep(1.05)
        there_after_ttl = (await flags_of(replica, ADMIN))["enable_reroute"]["enabled"]

    assert (here, there_at_once, there_after_ttl) == (False, True, False)
