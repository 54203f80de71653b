"""`/ui/policies` without a browser, on SQLite and PostgreSQL: the forms (errors beside their field, what was
typed kept), the history's diffs, the dry run, CSRF, and what a viewer may not do."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.ui.auth import CSRF_HEADER
from settings import Settings
from tests.api.test_ui import csrf_token, log_in
from tests.support.common import SHIPPED_ROUTES

ADMIN_KEY = "ui-policies-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LOG_PII = "guardrails:\n  input:\n    pii:\n      action: log\n"


@pytest.fixture
async def app(migrated_db_url: str) -> AsyncIterator[FastAPI]:
    """The app alone: these pages need no Temporal."""
    settings = Settings(env="test", admin_api_key=ADMIN_KEY, database_url=migrated_db_url, routes_file=SHIPPED_ROUTES)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://k") as client:
        yield client


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie jar of its own, as one browser; https, since outside dev the session cookie is `Secure`."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://kintsugi", timeout=30) as client:
        yield client


async def new_key(api: httpx.AsyncClient, role: str, tenant_id: str | None = None) -> dict[str, str]:
    if tenant_id is None:
        tenant = await api.post("/v1/tenants", json={"name": "acme"}, headers=ADMIN)
        tenant_id = tenant.json()["id"]
    key = await api.post("/v1/keys", json={"tenant_id": tenant_id, "role": role}, headers=ADMIN)
    assert key.status_code == 201, key.text
    return {"key": key.json()["key"], "tenant": str(tenant_id)}


async def session_of(browser: httpx.AsyncClient, key: str) -> str:
    """Log in; the session's CSRF token, read from the policies page's forms."""
    assert (await log_in(browser, key)).status_code == 303
    page = await browser.get("/ui/policies")
    assert page.status_code == 200
    return csrf_token(page)


async def create_form(browser: httpx.AsyncClient, token: str, **fields: str) -> httpx.Response:
    return await browser.post("/ui/policies", data={"csrf_token": token, **fields})


def field_error(page: str, field: str) -> str | None:
    found = re.search(rf'<p id="{field}-error" class="field-error"[^>]*>([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else None


def textarea(page: str, field_id: str) -> str:
    found = re.search(rf'<textarea id="{field_id}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, f"no textarea #{field_id}"
    return html.unescape(found.group(1))


async def policies_of(api: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    response = await api.get("/v1/policies", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def test_an_admin_creates_a_policy_and_lands_on_its_page(
    api: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    admin = await new_key(api, "admin")
    token = await session_of(browser, admin["key"])

    created = await create_form(browser, token, name="strict", document=LOG_PII, default="on")

    assert created.status_code == 303, created.text
    (policy,) = await policies_of(api, admin["key"])
    assert (policy["name"], policy["default"], policy["version"]) == ("strict", True, 1)
    assert policy["document"] == {"guardrails": {"input": {"pii": {"action": "log"}}}}
    assert created.headers["location"] == f"/ui/policies/{policy['id']}"
    listing = await browser.get("/ui/policies")
    row = re.search(r'<tr data-policy="strict">(.*?)</tr>', listing.text, re.S)
    assert row and f'href="/ui/policies/{policy["id"]}"' in row.group(1)
    assert 'data-version="1"' in row.group(1) and "Default" in row.group(1)
    assert "<title>Policies · Kintsugi</title>" in listing.text
    page = await browser.get(created.headers["location"])
    assert "<title>Policy strict · Kintsugi</title>" in page.text
    assert textarea(page.text, "document") == LOG_PII


async def test_a_json_document_is_accepted_too(api: httpx.AsyncClient, browser: httpx.AsyncClient) -> None:
    admin = await new_key(api, "admin")
    token = await session_of(browser, admin["key"])

    created = await create_form(browser, token, name="json", document='{"models": {"deny": ["claude"]}}')

    assert created.status_code == 303
    assert (await policies_of(api, admin["key"]))[0]["document"] == {"models": {"deny": ["claude"]}}


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (
            "guardrails: {input: {pii: {action: shout}}}",
            "guardrails.input.pii.action: Input should be 'block', 'redact' or 'log'",
        ),
        ("models: {deny: [claude]\nregions: [eu]", "not valid YAML or JSON: line 2, column"),
        ("- a list\n- not a mapping", "the document must be a mapping"),
        ('{"modles": {}}', "modles: Extra inputs are not permitted"),
    ],
)
async def test_a_malformed_document_is_refused_beside_the_field_keeping_what_was_typed(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, document: str, error: str
) -> None:
    admin = await new_key(api, "admin")
    token = await session_of(browser, admin["key"])

    refused = await create_form(browser, token, name="draft", document=document, default="on")

    assert refused.status_code == 422
    shown = field_error(refused.text, "document")
    assert shown is not None and shown.startswith(error), shown
    assert 'aria-invalid="true"' in refused.text
    assert textarea(refused.text, "document") == document
    assert 'value="draft"' in refused.text and "checked" in refused.text
    assert await policies_of(api, admin["key"]) == []


async def test_a_blank_or_taken_name_is_refused_beside_the_name(
    api: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    admin = await new_key(api, "admin")
    token = await session_of(browser, admin["key"])
    await create_form(browser, token, name="taken", document="")

    blank = await create_form(browser, token, name="  ", document=LOG_PII)
    taken = await create_form(browser, token, name="taken", document=LOG_PII)

    assert (blank.status_code, field_error(blank.text, "name")) == (422, "Enter a name.")
    assert taken.status_code == 409
    assert "already exists" in (field_error(taken.text, "name") or "")
    assert textarea(taken.text, "document") == LOG_PII
    assert [p["name"] for p in await policies_of(api, admin["key"])] == ["taken"]


async def test_an_edit_makes_version_2_and_the_history_shows_its_diff(
    api: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    admin = await new_key(api, "admin")
    token = await session_of(browser, admin["key"])
    created = await create_form(browser, token, name="p", document=LOG_PII)
    path = created.headers["location"]

    bad = await browser.post(path, data={"csrf_token": token, "document": LOG_PII.replace("log", "shout")})
    saved = await browser.post(path, data={"csrf_token": token, "document": LOG_PII.replace("log", "redact")})

    assert bad.status_code == 422
    assert (field_error(bad.text, "document") or "").startswith("guardrails.input.pii.action:")
    assert saved.status_code == 303
    (policy,) = await policies_of(api, admin["key"])
    assert (policy["version"], policy["document"]) == (2, {"guardrails": {"input": {"pii": {"action": "redact"}}}})
    page = (await browser.get(path)).text
    assert 'id="current-version" data-version="2"' in page
    newest = re.search(r'<details class="version" data-version="2" open>(.*?)</details>', page, re.S)
    assert newest, "version 2 is not the open entry of the history"
    removed = re.findall(r'<span class="diff-del">([^<]*)</span>', newest.group(1))
    added = re.findall(r'<span class="diff-add">([^<]*)</span>', newest.group(1))
    assert [line.strip() for line in removed] == ["-      action: log"]
    assert [line.strip() for line in added] == ["+      action: redact"]
    first = re.search(r'<details class="version" data-version="1">(.*?)</details>', page, re.S)
    assert first and "+      action: log" in html.unescape(first.group(1))  # version 1: against nothing


async def test_ticking_default_off_unsets_it(api: httpx.AsyncClient, browser: httpx.AsyncClient) -> None:
    admin = await new_key(api, "admin")
    token = await session_of(browser, admin["key"])
    path = (await create_form(browser, token, name="p", document="", default="on")).headers["location"]

    await browser.post(path, data={"csrf_token": token, "document": ""})  # the box left unticked

    assert (await policies_of(api, admin["key"]))[0]["default"] is False


async def test_posts_without_the_sessions_csrf_token_are_refused(
    api: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    admin = await new_key(api, "admin")
    token = await session_of(browser, admin["key"])
    path = (await create_form(browser, token, name="p", document=LOG_PII)).headers["location"]

    refused = [
        await browser.post("/ui/policies", data={"name": "q", "document": ""}),
        await browser.post("/ui/policies", data={"name": "q", "document": "", "csrf_token": "forged"}),
        await browser.post(path, data={"document": "", "csrf_token": "forged"}),
        await browser.post(f"{path}/delete", data={}),
        await browser.post(f"{path}/evaluate", data={"model": "sim-1", "prompt": "hi"}, headers={CSRF_HEADER: "x"}),
    ]

    for response in refused:
        assert response.status_code == 403
        assert "security token" in response.text
    (policy,) = await policies_of(api, admin["key"])
    assert (policy["name"], policy["version"]) == ("p", 1)


async def test_a_viewer_reads_but_sees_no_edit_form_and_cannot_post_one(
    app: FastAPI, api: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    admin = await new_key(api, "admin")
    viewer = await new_key(api, "viewer", admin["tenant"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://kintsugi") as admin_browser:
        admin_token = await session_of(admin_browser, admin["key"])
        path = (await create_form(admin_browser, admin_token, name="p", document=LOG_PII)).headers["location"]
    token = await session_of(browser, viewer["key"])

    listing = (await browser.get("/ui/policies")).text
    page = (await browser.get(path)).text

    assert '<tr data-policy="p">' in listing
    assert "Create policy" not in listing and 'action="/ui/policies"' not in listing
    assert f'action="{path}"' not in page and '<textarea id="document"' not in page
    assert "Save as version" not in page and f'action="{path}/delete"' not in page
    assert "action: log" in html.unescape(page)  # the document, read-only
    assert f'action="{path}/evaluate"' in page  # a dry run changes nothing: a viewer may run one
    for response in (
        await browser.post("/ui/policies", data={"csrf_token": token, "name": "mine", "document": ""}),
        await browser.post(path, data={"csrf_token": token, "document": ""}),
        await browser.post(f"{path}/delete", data={"csrf_token": token}),
    ):
        assert response.status_code == 403
        assert "admin role" in response.text
    (policy,) = await policies_of(api, admin["key"])
    assert policy["version"] == 1


async def test_another_tenants_policy_page_is_404(api: httpx.AsyncClient, browser: httpx.AsyncClient) -> None:
    admin = await new_key(api, "admin")
    intruder = await new_key(api, "admin")
    created = await api.post(
        "/v1/policies", json={"name": "p", "document": {}}, headers={"Authorization": f"Bearer {admin['key']}"}
    )
    path = f"/ui/policies/{created.json()['id']}"
    token = await session_of(browser, intruder["key"])

    responses = [
        await browser.get(path),
        await browser.post(path, data={"csrf_token": token, "document": ""}),
        await browser.post(f"{path}/delete", data={"csrf_token": token}),
        await browser.post(f"{path}/evaluate", data={"csrf_token": token, "model": "sim-1", "prompt": "hi"}),
    ]

    for response in responses:
        assert response.status_code == 404
        assert "No such policy" in response.text
    assert (await policies_of(api, admin["key"]))[0]["version"] == 1


async def test_an_admin_deletes_a_policy(api: httpx.AsyncClient, browser: httpx.AsyncClient) -> None:
    admin = await new_key(api, "admin")
    token = await session_of(browser, admin["key"])
    path = (await create_form(browser, token, name="p", document="")).headers["location"]

    deleted = await browser.post(f"{path}/delete", data={"csrf_token": token})

    assert (deleted.status_code, deleted.headers["location"]) == (303, "/ui/policies")
    assert await policies_of(api, admin["key"]) == []
    assert 'id="no-policies"' in (await browser.get("/ui/policies")).text


async def test_the_navigation_links_the_page_and_marks_it(api: httpx.AsyncClient, browser: httpx.AsyncClient) -> None:
    viewer = await new_key(api, "viewer")
    await session_of(browser, viewer["key"])

    page = (await browser.get("/ui/policies")).text
    flags = (await browser.get("/ui/flags")).text

    assert '<a href="/ui/policies" aria-current="page">Policies</a>' in page
    assert '<a href="/ui/policies">Policies</a>' in flags


async def test_a_dry_run_with_an_empty_prompt_asks_for_one_beside_the_field(
    api: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    admin = await new_key(api, "admin")
    token = await session_of(browser, admin["key"])
    path = (await create_form(browser, token, name="p", document="")).headers["location"]

    swapped = await browser.post(
        f"{path}/evaluate", data={"model": "sim-1", "prompt": "  "}, headers={CSRF_HEADER: token, "HX-Request": "true"}
    )

    assert swapped.status_code == 200  # htmx swaps no 4xx: the error travels inside the section
    assert swapped.text.lstrip().startswith('<div id="dry-run">')
    assert field_error(swapped.text, "dry-prompt") == "Enter a prompt to evaluate."


async def test_the_dry_run_shows_the_redacted_prompt_and_the_cost(
    api: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    viewer = await new_key(api, "viewer")
    created = await api.post(
        "/v1/policies",
        json={
            "name": "p",
            "document": {"guardrails": {"input": {"pii": {"action": "redact"}}}},
            "tenant_id": viewer["tenant"],
        },
        headers=ADMIN,
    )
    path = f"/ui/policies/{created.json()['id']}"
    token = await session_of(browser, viewer["key"])

    swapped = await browser.post(
        f"{path}/evaluate",
        data={"model": "sim-1", "prompt": "Mail alice@example.com today"},
        headers={CSRF_HEADER: token, "HX-Request": "true"},
    )
    plain = await browser.post(f"{path}/evaluate", data={"csrf_token": token, "model": "nope", "prompt": "hi"})

    assert swapped.status_code == 200, swapped.text
    assert 'data-allowed="true"' in swapped.text
    redacted = re.search(r'<pre id="redacted-prompt">([^<]*)</pre>', swapped.text)
    assert redacted and "[EMAIL]" in redacted.group(1) and "alice@example.com" not in redacted.group(1)
    assert '<dd id="decision-cost">$0.00</dd>' in swapped.text
    assert plain.status_code == 422  # a plain form gets the whole page, the error beside the model
    assert "no route for model 'nope'" in (field_error(plain.text, "dry-model") or "")
    assert "<title>Policy p · Kintsugi</title>" in plain.text
