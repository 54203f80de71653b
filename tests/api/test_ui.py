"""The web UI without a browser, on SQLite and PostgreSQL: login and sessions, CSRF, roles, and the dashboard's
figures against the cost report they are read from."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.ui.auth import CSRF_HEADER, LOGIN_COOKIE, SESSION_COOKIE
from api.ui.dashboard import day_window, month_window
from api.ui.session import SessionClaims, key_mac, sign
from ops.waits import free_port
from store import queries
from store.engine import create_engine, session_factory
from tests.api.test_api import auth, new_key
from tests.support.common import HELLO
from tests.support.harness import ADMIN_KEY, Harness

_HIDDEN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECURE = re.compile(r";\s*secure\s*(;|$)", re.IGNORECASE)


@contextlib.asynccontextmanager
async def browser(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the harness's app with a cookie jar of its own, as one browser would be. On https: outside
    dev the cookies are `Secure`, and a cookie jar keeps those off plain http."""
    transport = httpx.ASGITransport(app=harness.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://kintsugi", timeout=30) as client:
        yield client


def csrf_token(page: httpx.Response) -> str:
    found = _HIDDEN_CSRF.search(page.text)
    assert found, f"no CSRF field on {page.url}"
    return html.unescape(found.group(1))


async def log_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """Fill in and send the login form, as a person would: GET the form, POST it with its hidden token."""
    form = await client.get("/ui/login")
    assert form.status_code == 200
    return await client.post("/ui/login", data={"key": key, "csrf_token": csrf_token(form)})


async def logged_in(client: httpx.AsyncClient, key: str) -> str:
    """Log in; the session's CSRF token, read from the dashboard's forms."""
    response = await log_in(client, key)
    assert response.status_code == 303, response.text
    return csrf_token(await client.get("/ui/flags"))


def plaintext(key: dict[str, str]) -> str:
    return key["Authorization"].removeprefix("Bearer ")


def set_cookie(response: httpx.Response, name: str) -> str:
    """The response's `Set-Cookie` header for `name`."""
    return next(v for v in response.headers.get_list("set-cookie") if v.startswith(f"{name}="))


def cookie_claims(value: str) -> str:
    """The JSON a session cookie carries, decoded by hand: what anyone holding the cookie can read."""
    body = value.partition(".")[0]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


async def test_a_good_key_logs_in_with_a_signed_http_only_cookie(kintsugi_db: Harness) -> None:
    app_key = await new_key(kintsugi_db, "app")
    async with browser(kintsugi_db) as client:
        response = await log_in(client, plaintext(app_key))

        assert response.status_code == 303
        assert response.headers["location"] == "/ui/"
        cookie = set_cookie(response, SESSION_COOKIE)
        assert "HttpOnly" in cookie
        assert _SECURE.search(cookie)  # the harness runs with env=test
        assert "samesite=lax" in cookie.lower()
        assert "Path=/ui" in cookie
        assert plaintext(app_key) not in cookie and plaintext(app_key)[3:20] not in cookie
        page = await client.get("/ui/")
        assert page.status_code == 200
        assert "<title>Dashboard · Kintsugi</title>" in page.text
        assert "acme" in page.text  # the tenant
        assert 'data-role="app"' in page.text


async def test_a_bad_key_is_refused_beside_the_field_and_sets_no_session(kintsugi_db: Harness) -> None:
    async with browser(kintsugi_db) as client:
        response = await log_in(client, "ks_not-a-key")

        assert response.status_code == 401
        assert 'aria-invalid="true"' in response.text
        error = re.search(r'<p id="key-error" class="field-error">([^<]+)</p>', response.text)
        assert error and "not valid" in error.group(1)
        assert SESSION_COOKIE not in client.cookies
        assert (await client.get("/ui/")).status_code == 303


async def test_a_login_post_without_the_forms_token_is_refused(kintsugi_db: Harness) -> None:
    async with browser(kintsugi_db) as client:
        response = await client.post("/ui/login", data={"key": ADMIN_KEY, "csrf_token": "forged"})

        assert response.status_code == 403
        assert SESSION_COOKIE not in client.cookies


@pytest.mark.parametrize(
    ("env", "scheme", "forced", "secure"),
    [
        ("prod", "http", None, True),  # behind a proxy that terminates TLS, the API sees http
        ("prod", "https", None, True),
        ("dev", "http", None, False),  # a dev browser on http://127.0.0.1 must get the cookie back
        ("dev", "https", None, True),
        ("prod", "http", False, False),  # KINTSUGI_UI_SECURE_COOKIES=false: a UI served over plain http
        ("dev", "http", True, True),
    ],
)
async def test_cookies_are_secure_outside_dev_or_as_configured(
    kintsugi: Harness, env: str, scheme: str, forced: bool | None, secure: bool
) -> None:
    app = create_app(kintsugi.settings.model_copy(update={"env": env, "ui_secure_cookies": forced}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://kintsugi", timeout=30) as client:
            form = await client.get("/ui/login")
            # By hand: a cookie jar, as a browser, would keep a Secure cookie off plain http.
            login_cookie = form.cookies[LOGIN_COOKIE]
            login = await client.post(
                "/ui/login",
                data={"key": ADMIN_KEY, "csrf_token": csrf_token(form)},
                headers={"Cookie": f"{LOGIN_COOKIE}={login_cookie}"},
            )
            assert login.status_code == 303, login.text
            client.cookies.clear()
            logout = await client.post("/ui/logout")  # without a live session, no token needed

    cookies = {
        "login form": set_cookie(form, LOGIN_COOKIE),
        "session": set_cookie(login, SESSION_COOKIE),
        "login form cleared": set_cookie(login, LOGIN_COOKIE),
        "session cleared": set_cookie(logout, SESSION_COOKIE),
    }
    for name, cookie in cookies.items():
        assert bool(_SECURE.search(cookie)) is secure, f"{name}: {cookie}"


async def test_the_session_cookie_holds_neither_the_key_nor_its_hash(kintsugi_db: Harness) -> None:
    app_key = await new_key(kintsugi_db, "app")
    for key in (ADMIN_KEY, plaintext(app_key)):
        async with browser(kintsugi_db) as client:
            response = await log_in(client, key)
            assert response.status_code == 303, response.text
            value = response.cookies[SESSION_COOKIE]
            claims = cookie_claims(value)

            assert '"key_id"' in claims  # the decoding worked
            for secret in (key, queries.hash_key(key)):  # an admin key's hash would let a guess be checked
                assert secret not in value and secret not in claims
            assert (await client.get("/ui/")).status_code == 200


async def test_the_environments_admin_key_logs_in_as_the_platform_admin(kintsugi_db: Harness) -> None:
    async with browser(kintsugi_db) as client:
        await logged_in(client, ADMIN_KEY)
        flags = await client.get("/ui/flags")

        assert 'data-role="admin"' in flags.text
        assert "Turn off globally" in flags.text  # only the platform admin sets global values


@pytest.mark.parametrize("path", ["/ui/", "/ui/flags"])
async def test_pages_without_a_session_redirect_to_the_login(kintsugi_db: Harness, path: str) -> None:
    async with browser(kintsugi_db) as client:
        response = await client.get(path)

        assert response.status_code == 303
        assert response.headers["location"] == "/ui/login"


async def test_an_htmx_request_without_a_session_reloads_the_login_page(kintsugi_db: Harness) -> None:
    async with browser(kintsugi_db) as client:
        response = await client.post(
            "/ui/flags/track_model_costs", data={"scope": "tenant", "change": "off"}, headers={"HX-Request": "true"}
        )

        assert response.headers["HX-Redirect"] == "/ui/login"


async def test_tampered_foreign_and_expired_cookies_are_refused(kintsugi_db: Harness) -> None:
    secret = kintsugi_db.settings.ui_session_key
    admin_hash = queries.hash_key(ADMIN_KEY)
    app_key = await new_key(kintsugi_db, "app")
    app_hash = queries.hash_key(plaintext(app_key))

    def cookie(key_id: str | None, mac: str, *, expires_in: int = 600, signed_with: bytes = secret) -> str:
        claims = SessionClaims(key_id=key_id, key_mac=mac, csrf_token="t", expires_at=int(time.time()) + expires_in)
        return sign(claims, signed_with)

    admin_mac = key_mac(admin_hash, secret)
    live = {
        "admin key": cookie(None, admin_mac),
        "app key": cookie(app_key["id"], key_mac(app_hash, secret)),
    }
    body, _, mac = live["admin key"].partition(".")
    tampered_mac = admin_mac[:-1] + ("1" if admin_mac.endswith("0") else "0")
    refused = {
        "tampered body": f"{body[:-2]}AA.{mac}",
        "tampered signature": f"{body}.{mac[:-2]}AA",
        "other secret": cookie(None, key_mac(admin_hash, b"another secret"), signed_with=b"another secret"),
        "expired": cookie(None, admin_mac, expires_in=-1),
        "not a cookie": "garbage",
        # Signed with the right secret, but not the MAC the server computes for the key:
        "key MAC under another secret": cookie(None, key_mac(admin_hash, b"another secret")),
        "bare key hash": cookie(None, admin_hash),
        "tampered key MAC": cookie(None, tampered_mac),
        "another key's MAC": cookie(app_key["id"], admin_mac),
    }
    async with browser(kintsugi_db) as client:
        for name, value in live.items():  # the untampered values work
            client.cookies.set(SESSION_COOKIE, value, domain="kintsugi.local", path="/ui")
            assert (await client.get("/ui/")).status_code == 200, name

        for name, value in refused.items():
            client.cookies.set(SESSION_COOKIE, value, domain="kintsugi.local", path="/ui")
            response = await client.get("/ui/")
            assert response.status_code == 303, name


async def test_a_revoked_keys_session_ends_at_once(kintsugi_db: Harness) -> None:
    app_key = await new_key(kintsugi_db, "app")
    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(app_key))
        assert (await client.get("/ui/")).status_code == 200

        revoked = await kintsugi_db.http.delete(f"/v1/keys/{app_key['id']}", headers=kintsugi_db.admin)
        assert revoked.status_code == 204

        assert (await client.get("/ui/")).status_code == 303


async def test_logout_clears_the_session_and_needs_the_token(kintsugi_db: Harness) -> None:
    async with browser(kintsugi_db) as client:
        token = await logged_in(client, ADMIN_KEY)

        forged = await client.post("/ui/logout", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert (await client.get("/ui/")).status_code == 200  # still logged in

        response = await client.post("/ui/logout", data={"csrf_token": token})
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/login"
        assert SESSION_COOKIE not in client.cookies
        assert (await client.get("/ui/")).status_code == 303


async def test_every_navigation_link_is_a_page_that_exists(kintsugi_db: Harness) -> None:
    viewer = await new_key(kintsugi_db, "viewer")
    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(viewer))
        page = await client.get("/ui/")
        nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', page.text, re.S)
        assert nav
        links = re.findall(r'href="([^"]+)"', nav.group(1))

        assert links == ["/ui/", "/ui/jobs", "/ui/flags", "/ui/policies"]
        for link in links:
            linked = await client.get(link)
            assert linked.status_code == 200, link
            assert 'aria-current="page"' in linked.text


async def test_static_files_are_served_without_a_session(kintsugi_db: Harness) -> None:
    async with browser(kintsugi_db) as client:
        htmx = await client.get("/ui/static/htmx.min.js")
        css = await client.get("/ui/static/kintsugi.css")

        assert htmx.status_code == 200 and "htmx" in htmx.text
        assert css.status_code == 200


async def flag(harness: Harness, key: dict[str, str], name: str) -> dict[str, object]:
    listed = (await harness.http.get("/v1/flags", headers=auth(key))).json()["data"]
    return next(item for item in listed if item["key"] == name)


async def test_a_viewer_sees_no_toggles_and_cannot_post_one(kintsugi_db: Harness) -> None:
    viewer = await new_key(kintsugi_db, "viewer")
    async with browser(kintsugi_db) as client:
        token = await logged_in(client, plaintext(viewer))
        page = await client.get("/ui/flags")

        assert page.status_code == 200
        assert "track_model_costs" in page.text
        assert "hx-post" not in page.text and "Turn off" not in page.text

        refused = await client.post(
            "/ui/flags/track_model_costs",
            data={"scope": "tenant", "change": "off"},
            headers={CSRF_HEADER: token, "HX-Request": "true"},
        )
        assert refused.status_code == 403
        assert (await flag(kintsugi_db, viewer, "track_model_costs"))["enabled"] is True


async def test_a_toggle_needs_the_sessions_csrf_token(kintsugi_db: Harness) -> None:
    admin = await new_key(kintsugi_db, "admin")
    async with browser(kintsugi_db) as client:
        token = await logged_in(client, plaintext(admin))
        change = {"scope": "tenant", "change": "off"}

        missing = await client.post("/ui/flags/track_model_costs", data=change)
        wrong = await client.post("/ui/flags/track_model_costs", data={**change, "csrf_token": "forged"})
        assert (missing.status_code, wrong.status_code) == (403, 403)
        assert (await flag(kintsugi_db, admin, "track_model_costs"))["enabled"] is True

        swapped = await client.post(
            "/ui/flags/track_model_costs", data=change, headers={CSRF_HEADER: token, "HX-Request": "true"}
        )
        assert swapped.status_code == 200
        assert swapped.text.lstrip().startswith('<tr id="flag-track_model_costs"')  # the row, for htmx to swap
        assert 'data-enabled="false"' in swapped.text
        assert (await flag(kintsugi_db, admin, "track_model_costs"))["source"] == "tenant"

        posted = await client.post("/ui/flags/track_model_costs", data={**change, "change": "on", "csrf_token": token})
        assert posted.status_code == 303  # a plain form goes back to the page
        assert (await flag(kintsugi_db, admin, "track_model_costs"))["enabled"] is True


async def test_a_tenant_admin_sets_its_own_override_never_the_global_value(kintsugi_db: Harness) -> None:
    admin = await new_key(kintsugi_db, "admin")
    other = await new_key(kintsugi_db, "viewer")
    async with browser(kintsugi_db) as client:
        token = await logged_in(client, plaintext(admin))
        page = await client.get("/ui/flags")
        assert "globally" not in page.text

        refused = await client.post(
            "/ui/flags/enable_response_cache", data={"scope": "global", "change": "on", "csrf_token": token}
        )
        assert refused.status_code == 403

        turned_on = await client.post(
            "/ui/flags/enable_response_cache", data={"scope": "tenant", "change": "on", "csrf_token": token}
        )
        assert turned_on.status_code == 303
        assert (await flag(kintsugi_db, admin, "enable_response_cache"))["enabled"] is True
        assert (await flag(kintsugi_db, other, "enable_response_cache"))["enabled"] is False

        await client.post(
            "/ui/flags/enable_response_cache", data={"scope": "tenant", "change": "inherit", "csrf_token": token}
        )
        assert (await flag(kintsugi_db, admin, "enable_response_cache"))["source"] == "default"


async def seed_cost_rows(harness: Harness, tenant_id: str, other_tenant: str) -> None:
    """A month of a tenant's calls: priced today and earlier this month, unpriced, a cache hit; plus last
    month's and another tenant's rows, which the dashboard must leave out."""
    now = datetime.now(UTC)
    today, _ = day_window(now)
    month, _ = month_window(now)
    earlier = month if month < today else today  # on the 1st, "earlier this month" is today too
    rows: list[tuple[str, str, str, float | None, datetime, dict[str, Any]]] = [
        (tenant_id, "up", "gpt-4o-mini", 0.0125, today + timedelta(minutes=1), {}),
        (tenant_id, "up", "gpt-4o-mini", 0.0031, today + timedelta(minutes=2), {}),
        (tenant_id, "claude", "claude-3-5-haiku", 0.42, earlier + timedelta(minutes=3), {}),
        (tenant_id, "up", "mystery-model", None, today + timedelta(minutes=4), {"price_known": False}),
        (tenant_id, "up", "mystery-model", None, earlier + timedelta(minutes=5), {"price_known": False}),
        (tenant_id, "up", "gpt-4o-mini", 0.0, today + timedelta(minutes=6), {"outcome": "cache_hit", "saved_usd": 0.1}),
        (tenant_id, "up", "gpt-4o-mini", 9.0, month - timedelta(minutes=1), {}),
        (other_tenant, "up", "gpt-4o-mini", 7.0, today + timedelta(minutes=1), {}),
    ]
    engine = create_engine(harness.settings.effective_database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            for n, (tenant, provider, model, cost, at, details) in enumerate(rows):
                await queries.insert_cost_log(
                    session,
                    idempotency_key=f"seed-{tenant}-{n}",
                    job_id=f"job_seed_{n}",
                    tenant_id=tenant,
                    provider=provider,
                    model=model,
                    input_tokens=100 + n,
                    output_tokens=20 + n,
                    cost_usd=cost,
                    created_at=at,
                    **details,
                )
    finally:
        await engine.dispose()


def figure(page: str, element_id: str, attribute: str) -> str:
    found = re.search(rf'id="{element_id}" {attribute}="([^"]+)"', page)
    assert found, f"no #{element_id} on the page"
    return found.group(1)


async def test_the_dashboard_shows_the_cost_reports_figures(kintsugi_db: Harness) -> None:
    viewer = await new_key(kintsugi_db, "viewer")
    other = await new_key(kintsugi_db, "viewer")
    await seed_cost_rows(kintsugi_db, viewer["tenant"], other["tenant"])
    now = datetime.now(UTC)
    engine = create_engine(kintsugi_db.settings.effective_database_url)
    try:
        async with session_factory(engine)() as session:
            today = await queries.cost_report(session, tenant_id=viewer["tenant"], group_by="model",
                                              start=day_window(now)[0], end=day_window(now)[1])  # fmt: skip
            month = await queries.cost_report(session, tenant_id=viewer["tenant"], group_by="model",
                                              start=month_window(now)[0], end=month_window(now)[1])  # fmt: skip
    finally:
        await engine.dispose()
    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(viewer))
        page = (await client.get("/ui/")).text

    assert float(figure(page, "spend-today", "data-usd")) == today.total.spend_usd
    assert float(figure(page, "spend-month", "data-usd")) == month.total.spend_usd
    assert int(figure(page, "calls-today", "data-count")) == today.total.calls
    assert int(figure(page, "calls-month", "data-count")) == month.total.calls
    assert float(figure(page, "saved-month", "data-usd")) == month.total.saved_usd
    # The seeded figures themselves, so a report that lost rows cannot pass by agreeing with itself.
    assert month.total.spend_usd == pytest.approx(0.0125 + 0.0031 + 0.42)
    assert month.total.calls == 6 and month.total.unpriced_calls == 2
    assert "2 calls had no known price and are not in the spend" in page
    bars = re.findall(r'<g class="bar" [^>]*data-label="([^"]+)" data-value="([^"]+)"', page)
    assert [(label, float(value)) for label, value in bars] == [(row.group, row.spend_usd) for row in month.data]
    assert bars[0][0] == "claude/claude-3-5-haiku"  # the costliest first


async def test_a_tenant_with_only_priced_calls_sees_no_unpriced_warning(kintsugi_db: Harness) -> None:
    viewer = await new_key(kintsugi_db, "viewer")
    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(viewer))
        page = (await client.get("/ui/")).text

    assert "no known price" not in page
    assert figure(page, "spend-today", "data-usd") == "0.0"
    assert "No model calls this month yet." in page


async def test_the_dashboard_counts_the_tenants_jobs_by_status(kintsugi_db: Harness) -> None:
    app_key = await new_key(kintsugi_db, "app")
    job = await kintsugi_db.http.post(
        "/v1/jobs", json={"model": "sim-1", "messages": HELLO}, headers={**auth(app_key), "Prefer": "wait=10"}
    )
    assert job.json()["status"] == "succeeded"
    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(app_key))
        for _ in range(100):  # visibility lags the workflow a little
            page = (await client.get("/ui/")).text
            succeeded = re.search(r'data-status="succeeded">\s*<dt>succeeded</dt>\s*<dd data-count="(\d+)"', page)
            if succeeded and succeeded.group(1) == "1":
                break
            await asyncio.sleep(0.05)
        assert succeeded and succeeded.group(1) == "1", "the dashboard never counted the job as succeeded"


async def test_the_dashboard_renders_while_temporal_is_down(kintsugi: Harness) -> None:
    settings = kintsugi.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://kintsugi", timeout=30) as client:
            await logged_in(client, ADMIN_KEY)
            page = await client.get("/ui/")

    assert page.status_code == 200
    assert 'id="jobs-unavailable"' in page.text
    assert 'id="spend-today"' in page.text
