"""`/v1/policies`, key bindings and the dry run on SQLite and PostgreSQL: versions, one default per tenant,
who may write what, tenant isolation, the audit trail, and changes in force at once."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.app import create_app
from settings import Settings
from store.models import ApiKey, PolicyVersion
from store.policy_cache import PolicyCache
from tests.support.common import SHIPPED_ROUTES

ADMIN = {"Authorization": "Bearer policies-admin-key"}
PII_REDACT = {"guardrails": {"input": {"pii": {"action": "redact"}}}}
BAD_ACTION = {"guardrails": {"input": {"pii": {"action": "shout"}}}}
EMAIL_PROMPT = [{"role": "user", "content": "Write to alice@example.com about the invoice."}]


@pytest.fixture
async def api(migrated_db_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API alone (policies need no Temporal), on the shipped routes file."""
    settings = Settings(
        env="test", admin_api_key="policies-admin-key", database_url=migrated_db_url, routes_file=SHIPPED_ROUTES
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://k") as http:
        yield app, http


@pytest.fixture
def http(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


@pytest.fixture
def cache(api: tuple[FastAPI, httpx.AsyncClient]) -> PolicyCache:
    return api[0].state.policies  # type: ignore[no-any-return]


@pytest.fixture
def sessions(api: tuple[FastAPI, httpx.AsyncClient]) -> async_sessionmaker[AsyncSession]:
    return api[0].state.sessions  # type: ignore[no-any-return]


class Key:
    """A key of the test's: its headers, tenant and id."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.headers = {"Authorization": f"Bearer {body['key']}"}
        self.tenant: str = body["tenant_id"]
        self.id: str = body["id"]


async def new_tenant(http: httpx.AsyncClient) -> str:
    tenant = await http.post("/v1/tenants", json={"name": "acme"}, headers=ADMIN)
    assert tenant.status_code == 201, tenant.text
    return str(tenant.json()["id"])


async def new_key(http: httpx.AsyncClient, role: str, tenant_id: str | None = None, **extra: str) -> Key:
    tenant = tenant_id or await new_tenant(http)
    key = await http.post("/v1/keys", json={"tenant_id": tenant, "role": role, **extra}, headers=ADMIN)
    assert key.status_code == 201, key.text
    return Key(key.json())


async def create(
    http: httpx.AsyncClient, headers: dict[str, str], name: str, document: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    response = await http.post("/v1/policies", json={"name": name, "document": document, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def names(http: httpx.AsyncClient, headers: dict[str, str], **params: str) -> list[str]:
    response = await http.get("/v1/policies", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [policy["name"] for policy in response.json()["data"]]


async def audit(http: httpx.AsyncClient) -> list[tuple[str, str, Any, Any]]:
    """The audit log oldest first: (action, target, before, after)."""
    entries = (await http.get("/v1/audit", headers=ADMIN, params={"limit": 200})).json()["data"]
    return [(e["action"], e["target"], e["before"], e["after"]) for e in reversed(entries)]


async def test_a_policy_is_created_at_version_1_and_reads_back_as_written(http: httpx.AsyncClient) -> None:
    admin = await new_key(http, "admin")
    document = {"models": {"deny": ["claude"]}, **PII_REDACT, "limits": {"max_output_tokens": 500}}

    created = await create(http, admin.headers, "strict", document)
    fetched = await http.get(f"/v1/policies/{created['id']}", headers=admin.headers)

    assert created["id"].startswith("pol_")
    assert {k: created[k] for k in ("tenant_id", "name", "default", "version", "document")} == {
        "tenant_id": admin.tenant,
        "name": "strict",
        "default": False,
        "version": 1,
        "document": document,  # only what was written: no defaults filled in
    }
    assert fetched.status_code == 200 and fetched.json() == created
    assert await names(http, admin.headers) == ["strict"]


async def test_an_update_writes_version_n_plus_1_and_keeps_every_version(http: httpx.AsyncClient) -> None:
    admin = await new_key(http, "admin")
    created = await create(http, admin.headers, "p", {"guardrails": {"input": {"pii": {"action": "log"}}}})

    second = await http.put(f"/v1/policies/{created['id']}", json={"document": PII_REDACT}, headers=admin.headers)
    third = await http.put(f"/v1/policies/{created['id']}", json={"document": {}}, headers=ADMIN)
    versions = await http.get(f"/v1/policies/{created['id']}/versions", headers=admin.headers)

    assert (second.status_code, second.json()["version"], second.json()["document"]) == (200, 2, PII_REDACT)
    assert (third.json()["version"], third.json()["document"]) == (3, {})
    assert second.json()["updated_at"] > created["updated_at"]
    assert second.json()["created_at"] == created["created_at"]
    data = versions.json()["data"]
    assert [(v["version"], v["document"], v["created_by"]) for v in data] == [
        (3, {}, None),  # the environment's admin key
        (2, PII_REDACT, admin.id),
        (1, {"guardrails": {"input": {"pii": {"action": "log"}}}}, admin.id),
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (BAD_ACTION, "guardrails.input.pii.action: Input should be 'block', 'redact' or 'log'"),
        ({"limits": {"max_cost_usd_per_request": -1}}, "limits.max_cost_usd_per_request: Input should be greater"),
        ({"guardrails": {"input": {"pii": {"kinds": ["email", "dna"]}}}}, "guardrails.input.pii.kinds[1]: Input"),
        ({"modles": {"deny": []}}, "modles: Extra inputs are not permitted"),
        ({"abuse": {"flag": 0.9, "block": 0.5}}, "abuse: flag (0.9) must not be above block (0.5)"),
    ],
)
async def test_a_malformed_document_is_422_naming_its_path_and_writes_nothing(
    http: httpx.AsyncClient, document: dict[str, Any], message: str
) -> None:
    admin = await new_key(http, "admin")
    good = await create(http, admin.headers, "good", PII_REDACT)

    created = await http.post("/v1/policies", json={"name": "bad", "document": document}, headers=admin.headers)
    updated = await http.put(f"/v1/policies/{good['id']}", json={"document": document}, headers=admin.headers)

    for response in (created, updated):
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_policy"
        assert error["message"].startswith(message), error["message"]
    assert await names(http, admin.headers) == ["good"]
    current = (await http.get(f"/v1/policies/{good['id']}", headers=admin.headers)).json()
    assert (current["version"], current["document"]) == (1, PII_REDACT)
    assert [entry[0] for entry in await audit(http)] == ["policy.create"]


async def test_one_default_per_tenant(http: httpx.AsyncClient, cache: PolicyCache) -> None:
    admin = await new_key(http, "admin")
    neighbour = await new_key(http, "admin")
    theirs = await create(http, neighbour.headers, "theirs", {}, default=True)
    first = await create(http, admin.headers, "first", {}, default=True)

    second = await create(http, admin.headers, "second", PII_REDACT, default=True)

    listed = (await http.get("/v1/policies", headers=admin.headers)).json()["data"]
    assert {p["name"]: p["default"] for p in listed} == {"first": False, "second": True}
    assert (await http.get(f"/v1/policies/{theirs['id']}", headers=neighbour.headers)).json()["default"] is True
    assert (await cache.for_key(admin.tenant, admin.id)).id == second["id"]
    # The policy that lost the default is audited too, its document unchanged.
    assert ("policy.update", first["id"]) in [(action, target) for action, target, _, _ in await audit(http)]

    made_default = await http.put(
        f"/v1/policies/{first['id']}", json={"document": {}, "default": True}, headers=admin.headers
    )
    kept = await http.put(f"/v1/policies/{first['id']}", json={"document": {}}, headers=admin.headers)
    listed = (await http.get("/v1/policies", headers=admin.headers)).json()["data"]
    assert made_default.json()["default"] is True and kept.json()["default"] is True  # None: unchanged
    assert {p["name"]: p["default"] for p in listed} == {"first": True, "second": False}

    unset = await http.put(
        f"/v1/policies/{first['id']}", json={"document": {}, "default": False}, headers=admin.headers
    )
    assert unset.json()["default"] is False
    assert (await cache.for_key(admin.tenant, admin.id)).id is None  # the built-in default


async def test_a_duplicate_name_is_409_within_a_tenant_only(http: httpx.AsyncClient) -> None:
    admin = await new_key(http, "admin")
    other = await new_key(http, "admin")
    await create(http, admin.headers, "strict", {})

    again = await http.post("/v1/policies", json={"name": "strict", "document": PII_REDACT}, headers=admin.headers)
    elsewhere = await http.post("/v1/policies", json={"name": "strict", "document": {}}, headers=other.headers)

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "policy_exists"
    assert elsewhere.status_code == 201


async def test_another_tenants_policy_is_404_for_every_verb(http: httpx.AsyncClient) -> None:
    admin = await new_key(http, "admin")
    intruder = await new_key(http, "admin")
    policy = await create(http, admin.headers, "mine", PII_REDACT)
    path = f"/v1/policies/{policy['id']}"

    responses = [
        await http.get(path, headers=intruder.headers),
        await http.get(f"{path}/versions", headers=intruder.headers),
        await http.put(path, json={"document": {}}, headers=intruder.headers),
        await http.delete(path, headers=intruder.headers),
        await http.post(
            "/v1/policies/evaluate",
            json={"policy_id": policy["id"], "request": {"model": "sim-1", "messages": EMAIL_PROMPT}},
            headers=intruder.headers,
        ),
    ]

    for response in responses:
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "policy_not_found"
    assert await names(http, intruder.headers) == []
    current = (await http.get(path, headers=admin.headers)).json()
    assert (current["version"], current["document"]) == (1, PII_REDACT)


async def test_the_platform_admin_writes_any_tenants_policies_tenant_admins_only_their_own(
    http: httpx.AsyncClient,
) -> None:
    admin = await new_key(http, "admin")
    other_tenant = await new_tenant(http)

    placed = await create(http, ADMIN, "placed", {}, tenant_id=admin.tenant)
    refused = await http.post(
        "/v1/policies", json={"name": "x", "document": {}, "tenant_id": other_tenant}, headers=admin.headers
    )
    nowhere = await http.post(
        "/v1/policies", json={"name": "x", "document": {}, "tenant_id": "ten_nope"}, headers=ADMIN
    )

    assert placed["tenant_id"] == admin.tenant
    assert await names(http, admin.headers) == ["placed"]
    assert await names(http, ADMIN, tenant_id=admin.tenant) == ["placed"]
    assert await names(http, ADMIN) == []  # the platform admin's own (default) tenant
    assert (refused.status_code, refused.json()["error"]["code"]) == (404, "tenant_not_found")
    assert (nowhere.status_code, nowhere.json()["error"]["code"]) == (404, "tenant_not_found")
    listing = await http.get("/v1/policies", headers=admin.headers, params={"tenant_id": other_tenant})
    assert (listing.status_code, listing.json()["error"]["code"]) == (404, "tenant_not_found")
    assert await names(http, ADMIN, tenant_id=other_tenant) == []


@pytest.mark.parametrize("role", ["viewer", "app"])
async def test_viewers_and_apps_read_but_do_not_write(http: httpx.AsyncClient, role: str) -> None:
    admin = await new_key(http, "admin")
    reader = await new_key(http, role, admin.tenant)
    policy = await create(http, admin.headers, "p", PII_REDACT)
    path = f"/v1/policies/{policy['id']}"

    assert await names(http, reader.headers) == ["p"]
    assert (await http.get(path, headers=reader.headers)).json()["document"] == PII_REDACT
    assert (await http.get(f"{path}/versions", headers=reader.headers)).status_code == 200
    writes = [
        await http.post("/v1/policies", json={"name": "mine", "document": {}}, headers=reader.headers),
        await http.put(path, json={"document": {}}, headers=reader.headers),
        await http.delete(path, headers=reader.headers),
    ]
    for response in writes:
        assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    assert (await http.get(path, headers=admin.headers)).json()["version"] == 1


async def test_deleting_a_policy_unbinds_its_keys_in_the_same_change(
    http: httpx.AsyncClient, cache: PolicyCache, sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await new_key(http, "admin")
    fallback = await create(http, admin.headers, "fallback", {}, default=True)
    doomed = await create(http, admin.headers, "doomed", PII_REDACT)
    bound = await new_key(http, "app", admin.tenant, policy_id=doomed["id"])
    assert (await cache.for_key(admin.tenant, bound.id)).id == doomed["id"]

    deleted = await http.delete(f"/v1/policies/{doomed['id']}", headers=admin.headers)

    assert deleted.status_code == 204
    assert (await http.get(f"/v1/policies/{doomed['id']}", headers=admin.headers)).status_code == 404
    assert (await http.get(f"/v1/policies/{doomed['id']}/versions", headers=admin.headers)).status_code == 404
    assert (await cache.for_key(admin.tenant, bound.id)).id == fallback["id"]  # at once, in this process
    async with sessions() as session:
        row = await session.get(ApiKey, bound.id)
        versions = (await session.exec(select(PolicyVersion).where(PolicyVersion.policy_id == doomed["id"]))).all()
    assert row is not None and row.policy_id is None
    assert versions == []
    deletion = [entry for entry in await audit(http) if entry[0] == "policy.delete"]
    assert deletion == [
        (
            "policy.delete",
            doomed["id"],
            {"name": "doomed", "default": False, "version": 1, "document": PII_REDACT, "bound_keys": [bound.id]},
            None,
        )
    ]
    again = await http.delete(f"/v1/policies/{doomed['id']}", headers=admin.headers)
    assert (again.status_code, again.json()["error"]["code"]) == (404, "policy_not_found")


async def test_a_key_names_a_policy_of_its_own_tenant(http: httpx.AsyncClient, cache: PolicyCache) -> None:
    admin = await new_key(http, "admin")
    neighbour = await new_key(http, "admin")
    mine = await create(http, admin.headers, "mine", PII_REDACT)
    theirs = await create(http, neighbour.headers, "theirs", {})

    bound = await http.post(
        "/v1/keys", json={"tenant_id": admin.tenant, "role": "app", "policy_id": mine["id"]}, headers=admin.headers
    )
    foreign = await http.post(
        "/v1/keys", json={"tenant_id": admin.tenant, "role": "app", "policy_id": theirs["id"]}, headers=ADMIN
    )
    unknown = await http.post(
        "/v1/keys", json={"tenant_id": admin.tenant, "role": "app", "policy_id": "pol_nope\x00"}, headers=ADMIN
    )

    assert bound.status_code == 201, bound.text
    assert bound.json()["policy_id"] == mine["id"]
    assert (await cache.for_key(admin.tenant, bound.json()["id"])).id == mine["id"]
    for response in (foreign, unknown):
        assert (response.status_code, response.json()["error"]["code"]) == (404, "policy_not_found")
    plain = await new_key(http, "app", admin.tenant)
    assert (await cache.for_key(admin.tenant, plain.id)).id is None


async def test_an_existing_key_is_bound_and_unbound_and_each_change_audited(
    http: httpx.AsyncClient, cache: PolicyCache
) -> None:
    admin = await new_key(http, "admin")
    neighbour = await new_key(http, "admin")
    policy = await create(http, admin.headers, "p", PII_REDACT)
    theirs = await create(http, neighbour.headers, "theirs", {})
    app_key = await new_key(http, "app", admin.tenant)
    assert (await cache.for_key(admin.tenant, app_key.id)).id is None

    bind = await http.put(f"/v1/keys/{app_key.id}/policy", json={"policy_id": policy["id"]}, headers=admin.headers)
    assert (await cache.for_key(admin.tenant, app_key.id)).id == policy["id"]
    foreign = await http.put(f"/v1/keys/{app_key.id}/policy", json={"policy_id": theirs["id"]}, headers=ADMIN)
    not_theirs = await http.put(
        f"/v1/keys/{app_key.id}/policy", json={"policy_id": theirs["id"]}, headers=neighbour.headers
    )
    unbind = await http.put(f"/v1/keys/{app_key.id}/policy", json={"policy_id": None}, headers=admin.headers)

    assert (bind.status_code, bind.json()["policy_id"], bind.json()["id"]) == (200, policy["id"], app_key.id)
    assert "key" not in bind.json()  # the plaintext is never shown again
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "policy_not_found")
    assert (not_theirs.status_code, not_theirs.json()["error"]["code"]) == (404, "key_not_found")
    assert (unbind.status_code, unbind.json()["policy_id"]) == (200, None)
    assert (await cache.for_key(admin.tenant, app_key.id)).id is None
    bindings = [entry for entry in await audit(http) if entry[0] == "key.bind_policy"]
    assert bindings == [
        ("key.bind_policy", app_key.id, None, {"policy_id": policy["id"]}),
        ("key.bind_policy", app_key.id, {"policy_id": policy["id"]}, None),
    ]


async def test_every_change_is_audited_with_before_and_after(http: httpx.AsyncClient) -> None:
    admin = await new_key(http, "admin")
    policy = await create(http, admin.headers, "p", {})
    await http.put(f"/v1/policies/{policy['id']}", json={"document": PII_REDACT, "default": True}, headers=ADMIN)
    await http.delete(f"/v1/policies/{policy['id']}", headers=admin.headers)

    entries = (await http.get("/v1/audit", headers=admin.headers)).json()["data"]

    assert [(e["action"], e["tenant_id"], e["actor_key_id"], e["target"]) for e in reversed(entries)] == [
        ("policy.create", admin.tenant, admin.id, policy["id"]),
        ("policy.update", admin.tenant, None, policy["id"]),
        ("policy.delete", admin.tenant, admin.id, policy["id"]),
    ]
    create_entry, update_entry, _ = reversed(entries)
    assert (create_entry["before"], create_entry["after"]) == (
        None,
        {"name": "p", "default": False, "version": 1, "document": {}},
    )
    assert update_entry["before"] == create_entry["after"]
    assert update_entry["after"] == {"name": "p", "default": True, "version": 2, "document": PII_REDACT}


async def test_a_change_is_in_force_in_this_process_at_once(http: httpx.AsyncClient, cache: PolicyCache) -> None:
    admin = await new_key(http, "admin")
    policy = await create(http, admin.headers, "p", {}, default=True)
    assert (await cache.for_key(admin.tenant, admin.id)).version == 1  # read now, kept for the TTL (5 s)

    await http.put(f"/v1/policies/{policy['id']}", json={"document": PII_REDACT}, headers=admin.headers)

    active = await cache.for_key(admin.tenant, admin.id)
    assert active.version == 2
    assert active.document.guardrails.input.pii is not None
    assert active.document.guardrails.input.pii.action == "redact"


async def test_the_list_pages_by_name(http: httpx.AsyncClient) -> None:
    admin = await new_key(http, "admin")
    for name in ("charlie", "alpha", "delta", "bravo", "éclair"):
        await create(http, admin.headers, name, {})

    first = (await http.get("/v1/policies", headers=admin.headers, params={"limit": 2})).json()
    second = (
        await http.get("/v1/policies", headers=admin.headers, params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    third = (
        await http.get("/v1/policies", headers=admin.headers, params={"limit": 2, "cursor": second["next_cursor"]})
    ).json()

    pages = [[p["name"] for p in page["data"]] for page in (first, second, third)]
    assert sorted(name for page in pages for name in page) == ["alpha", "bravo", "charlie", "delta", "éclair"]
    assert pages[0] == ["alpha", "bravo"] and pages[1] == ["charlie", "delta"]
    assert third["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    ["not base64!", base64.urlsafe_b64encode(b"\xff\xfe").decode(), base64.urlsafe_b64encode(b"a\x00").decode()],
)
async def test_a_cursor_this_api_did_not_hand_out_is_400(http: httpx.AsyncClient, cursor: str) -> None:
    response = await http.get("/v1/policies", headers=ADMIN, params={"cursor": cursor})

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_cursor")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"name": "", "document": {}}, "name"),
        ({"name": "   ", "document": {}}, "name"),
        ({"name": "nul\x00name", "document": {}}, "name"),
        ({"name": "x", "document": ["not", "a", "mapping"]}, "document"),
        ({"name": "x", "document": {}, "default": "yes"}, "default"),
        ({"name": "x", "document": {}, "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_body_is_422_and_writes_nothing(http: httpx.AsyncClient, body: dict[str, Any], where: str) -> None:
    response = await http.post("/v1/policies", json=body, headers=ADMIN)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["message"].startswith(where)
    assert await names(http, ADMIN) == []


@pytest.mark.parametrize("policy_id", ["pol_missing", "nul%00byte", "x" * 300])
async def test_an_id_no_policy_can_have_is_404(http: httpx.AsyncClient, policy_id: str) -> None:
    for response in (
        await http.get(f"/v1/policies/{policy_id}", headers=ADMIN),
        await http.put(f"/v1/policies/{policy_id}", json={"document": {}}, headers=ADMIN),
        await http.delete(f"/v1/policies/{policy_id}", headers=ADMIN),
    ):
        assert (response.status_code, response.json()["error"]["code"]) == (404, "policy_not_found")


async def test_a_document_keeps_text_postgresql_json_may_hold(http: httpx.AsyncClient) -> None:
    document = {"guardrails": {"input": {"banned_terms": {"terms": ["nul\x00term", "ünïcode", "emoji 🙂"]}}}}

    created = await create(http, ADMIN, "odd text", document)

    assert (await http.get(f"/v1/policies/{created['id']}", headers=ADMIN)).json()["document"] == document


# The dry run: `domain.policy.evaluate` decides; these check that the endpoint hands it the request, the route
# plan and the tenant's flags, and answers its decision in the contract's shape.


async def test_a_dry_run_redacts_an_email_under_a_redact_rule(http: httpx.AsyncClient) -> None:
    admin = await new_key(http, "viewer")

    response = await http.post(
        "/v1/policies/evaluate",
        json={"document": PII_REDACT, "request": {"model": "sim-1", "messages": EMAIL_PROMPT}},
        headers=admin.headers,
    )

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["allowed"] is True and result["code"] is None
    redacted = result["redacted_messages"][0]["content"]
    assert "[EMAIL]" in redacted and "alice@example.com" not in redacted
    pii = [g for g in result["guardrails"] if g["guardrail"] == "pii"]
    assert len(pii) == 1 and pii[0]["action"] == "redact" and "email" in pii[0]["kinds"]
    assert result["estimated_cost_usd"] == 0.0  # sim-1 is priced at zero
    assert any("pii" in reason for reason in result["reasons"])


async def test_a_dry_run_of_a_stored_policy_refuses_a_denied_model(http: httpx.AsyncClient) -> None:
    admin = await new_key(http, "admin")
    viewer = await new_key(http, "viewer", admin.tenant)
    policy = await create(http, admin.headers, "no claude", {"models": {"deny": ["claude"]}})

    def body(model: str) -> dict[str, Any]:
        return {"policy_id": policy["id"], "request": {"model": model, "messages": EMAIL_PROMPT}}

    denied = await http.post("/v1/policies/evaluate", json=body("claude"), headers=viewer.headers)
    allowed = await http.post("/v1/policies/evaluate", json=body("sim-1"), headers=viewer.headers)

    assert denied.status_code == 200, denied.text
    assert (denied.json()["allowed"], denied.json()["code"]) == (False, "model_not_allowed")
    assert allowed.json()["allowed"] is True
    assert allowed.json()["redacted_messages"] == EMAIL_PROMPT  # no redact rule: the messages as sent


async def test_a_dry_run_follows_the_tenants_flags(http: httpx.AsyncClient) -> None:
    admin = await new_key(http, "admin")
    off = await http.put("/v1/flags/enable_policy_engine", json={"enabled": False}, headers=admin.headers)
    assert off.status_code == 200

    response = await http.post(
        "/v1/policies/evaluate",
        json={"document": {"models": {"deny": ["sim-1"]}}, "request": {"model": "sim-1", "messages": EMAIL_PROMPT}},
        headers=admin.headers,
    )

    assert response.json()["allowed"] is True
    assert response.json()["skipped"] == ["enable_policy_engine"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"document": BAD_ACTION, "request": {"model": "sim-1", "messages": EMAIL_PROMPT}}, 422, "invalid_policy"),
        ({"document": {}, "request": {"model": "nope", "messages": EMAIL_PROMPT}}, 404, "unknown_model"),
        ({"document": {}, "request": {"model": "sim-embed", "messages": EMAIL_PROMPT}}, 400, "model_type_mismatch"),
        (
            {"document": {}, "request": {"model": "sim-1", "messages": EMAIL_PROMPT, "params": {"max_tokens": 0}}},
            422,
            "validation_error",
        ),
        ({"request": {"model": "sim-1", "messages": EMAIL_PROMPT}}, 422, "validation_error"),
        (
            {"policy_id": "pol_x", "document": {}, "request": {"model": "sim-1", "messages": EMAIL_PROMPT}},
            422,
            "validation_error",
        ),
    ],
)
async def test_a_dry_run_refuses_what_a_job_would(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    response = await http.post("/v1/policies/evaluate", json=body, headers=ADMIN)

    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
