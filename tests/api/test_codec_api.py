"""`/codec/encode` and `/codec/decode`: the codec-server protocol the Temporal UI and CLI speak, for the platform
admin only (by bearer key, or under `/ui/codec` by UI session), answering CORS for the Temporal UI's origin."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.ui.auth import SESSION_COOKIE
from settings import Settings
from tests.api.test_ui import log_in
from tests.support.common import SHIPPED_ROUTES

ADMIN_KEY = "codec-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
UI_ORIGIN = "http://127.0.0.1:8233"
PROMPT = "the secret launch date is 3 March"

ApiFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def new_codec_key() -> str:
    return _b64(os.urandom(32))


def plain_payloads(*values: Any) -> dict[str, Any]:
    """A codec-server request body: JSON values as `json/plain` payloads, in proto JSON."""
    payloads = [
        {"metadata": {"encoding": _b64(b"json/plain")}, "data": _b64(json.dumps(value).encode())} for value in values
    ]
    return {"payloads": payloads}


def values_of(body: dict[str, Any]) -> list[Any]:
    return [json.loads(base64.b64decode(payload["data"])) for payload in body["payloads"]]


@pytest.fixture
def make_api(migrated_db_url: str) -> ApiFactory:
    """`make_api(**settings_overrides)`: the API alone (the codec needs no Temporal), the UI on port 8233. On
    https, with a cookie jar: outside dev the UI's session cookie is `Secure`."""

    @contextlib.asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(
            env="test",
            admin_api_key=ADMIN_KEY,
            database_url=migrated_db_url,
            routes_file=SHIPPED_ROUTES,
            ui_port=8233,
            **{"codec_key": new_codec_key(), **overrides},
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="https://k") as c:
            yield c

    return make


@pytest.fixture
async def http(make_api: ApiFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_api() as client:
        yield client


async def test_encode_hides_the_payloads_and_decode_gives_them_back(http: httpx.AsyncClient) -> None:
    encoded = await http.post("/codec/encode", json=plain_payloads({"content": PROMPT}, 42), headers=ADMIN)
    assert encoded.status_code == 200, encoded.text
    assert PROMPT not in base64.b64decode(encoded.json()["payloads"][0]["data"]).decode(errors="replace")
    assert [base64.b64decode(p["metadata"]["encoding"]) for p in encoded.json()["payloads"]] == [
        b"binary/encrypted"
    ] * 2

    decoded = await http.post("/codec/decode", json=encoded.json(), headers=ADMIN)

    assert decoded.status_code == 200, decoded.text
    assert values_of(decoded.json()) == [{"content": PROMPT}, 42]


async def test_decode_passes_payloads_that_were_never_encrypted_through(http: httpx.AsyncClient) -> None:
    body = plain_payloads("written before the codec was on")

    decoded = await http.post("/codec/decode", json=body, headers=ADMIN)

    assert decoded.json() == body


async def test_only_the_platform_admin_may_use_the_codec(http: httpx.AsyncClient) -> None:
    tenant = await http.post("/v1/tenants", json={"name": "acme"}, headers=ADMIN)
    tenant_admin = await http.post("/v1/keys", json={"tenant_id": tenant.json()["id"], "role": "admin"}, headers=ADMIN)
    as_tenant_admin = {"Authorization": f"Bearer {tenant_admin.json()['key']}"}
    body = plain_payloads(PROMPT)

    anonymous = await http.post("/codec/decode", json=body)
    other_admin = await http.post("/codec/decode", json=body, headers=as_tenant_admin)

    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "unauthorized")
    assert (other_admin.status_code, other_admin.json()["error"]["code"]) == (403, "forbidden")


async def test_the_temporal_ui_origin_passes_the_preflight_and_reads_answers(http: httpx.AsyncClient) -> None:
    preflight = await http.options(
        "/codec/decode",
        headers={
            "Origin": UI_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    answer = await http.post("/codec/decode", json=plain_payloads(1), headers={**ADMIN, "Origin": UI_ORIGIN})
    refusal = await http.post("/codec/decode", json=plain_payloads(1), headers={"Origin": UI_ORIGIN})

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-namespace"} <= allowed
    assert answer.headers["access-control-allow-origin"] == UI_ORIGIN
    # A refusal is readable too, so the UI can say "401" rather than a CORS failure.
    assert refusal.status_code == 401
    assert refusal.headers["access-control-allow-origin"] == UI_ORIGIN
    # The UI set to include credentials gets its answers only if each one, refusals too, allows credentials
    # for its exact origin (a browser rejects `*` with credentials).
    for response in (preflight, answer, refusal):
        assert response.headers["access-control-allow-credentials"] == "true"
        assert response.headers["access-control-allow-origin"] != "*"


async def test_the_platform_admins_ui_session_decodes_under_ui_codec(http: httpx.AsyncClient) -> None:
    sealed = (await http.post("/codec/encode", json=plain_payloads({"content": PROMPT}), headers=ADMIN)).json()
    assert (await log_in(http, ADMIN_KEY)).status_code == 303

    preflight = await http.options(
        "/ui/codec/decode",
        headers={"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    decoded = await http.post("/ui/codec/decode", json=sealed, headers={"Origin": UI_ORIGIN})
    # The cookie's path is /ui: under /codec the browser (and this cookie jar) does not send it.
    outside_ui = await http.post("/codec/decode", json=sealed, headers={"Origin": UI_ORIGIN})

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert decoded.status_code == 200, decoded.text
    assert values_of(decoded.json()) == [{"content": PROMPT}]
    assert decoded.headers["access-control-allow-origin"] == UI_ORIGIN
    assert decoded.headers["access-control-allow-credentials"] == "true"
    assert outside_ui.status_code == 401


async def test_a_tenant_admins_ui_session_is_refused_like_its_key(http: httpx.AsyncClient) -> None:
    tenant = await http.post("/v1/tenants", json={"name": "acme"}, headers=ADMIN)
    tenant_admin = await http.post("/v1/keys", json={"tenant_id": tenant.json()["id"], "role": "admin"}, headers=ADMIN)
    assert (await log_in(http, tenant_admin.json()["key"])).status_code == 303

    response = await http.post("/ui/codec/decode", json=plain_payloads(PROMPT), headers={"Origin": UI_ORIGIN})

    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN  # the UI shows the refusal


async def test_without_a_valid_session_or_key_the_ui_codec_is_a_401(http: httpx.AsyncClient) -> None:
    body = plain_payloads(PROMPT)

    anonymous = await http.post("/ui/codec/decode", json=body, headers={"Origin": UI_ORIGIN})
    http.cookies.set(SESSION_COOKIE, "forged.value", path="/ui")
    forged = await http.post("/ui/codec/decode", json=body, headers={"Origin": UI_ORIGIN})

    for response in (anonymous, forged):
        assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthorized")
        assert response.headers["access-control-allow-credentials"] == "true"


async def test_a_session_counts_only_from_the_temporal_ui_origin(http: httpx.AsyncClient) -> None:
    """Another same-site page's request carries the cookie too; only the Temporal UI's is let through."""
    assert (await log_in(http, ADMIN_KEY)).status_code == 303

    other_page = await http.post(
        "/ui/codec/decode", json=plain_payloads(PROMPT), headers={"Origin": "http://127.0.0.1:9999"}
    )
    no_origin = await http.post("/ui/codec/decode", json=plain_payloads(PROMPT))

    assert (other_page.status_code, no_origin.status_code) == (401, 401)
    assert "access-control-allow-origin" not in other_page.headers


async def test_another_origin_gets_no_cors_permission(http: httpx.AsyncClient) -> None:
    evil = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}

    preflight = await http.options("/codec/decode", headers=evil)
    answer = await http.post("/codec/decode", json=plain_payloads(1), headers={**ADMIN, "Origin": evil["Origin"]})

    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in answer.headers


async def test_configured_origins_replace_the_temporal_ui_default(make_api: ApiFactory) -> None:
    origin = "https://temporal.example.com"
    async with make_api(codec_cors_origins=f"{origin}, https://other.example.com") as http:
        configured = await http.options("/codec/encode", headers={"Origin": origin})
        default = await http.options("/codec/encode", headers={"Origin": UI_ORIGIN})

    assert configured.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-origin" not in default.headers


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"[]", "invalid_payloads"),
        (b'{"payloads": [{"data": "not base64!"}]}', "invalid_payloads"),
        (b'{"payloads": "none"}', "invalid_payloads"),
    ],
)
async def test_a_body_that_is_not_payloads_is_a_400(http: httpx.AsyncClient, content: bytes, code: str) -> None:
    response = await http.post("/codec/decode", content=content, headers={**ADMIN, "Content-Type": "application/json"})

    assert (response.status_code, response.json()["error"]["code"]) == (400, code)


async def test_a_payload_sealed_with_an_unknown_key_is_a_400(make_api: ApiFactory) -> None:
    async with make_api() as first:
        sealed = (await first.post("/codec/encode", json=plain_payloads(PROMPT), headers=ADMIN)).json()
    async with make_api() as second:  # another key
        response = await second.post("/codec/decode", json=sealed, headers=ADMIN)

    assert (response.status_code, response.json()["error"]["code"]) == (400, "payload_undecryptable")


async def test_without_a_codec_key_the_codec_says_so(make_api: ApiFactory) -> None:
    async with make_api(codec_key="") as http:
        response = await http.post("/codec/decode", json=plain_payloads(1), headers=ADMIN)

    assert (response.status_code, response.json()["error"]["code"]) == (409, "codec_not_configured")
