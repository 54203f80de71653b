"""The job API on SQLite and PostgreSQL: auth and roles, tenant isolation, idempotency, lists, bad input."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from ops.waits import free_port
from settings import Settings
from tests.support.common import HELLO, SHIPPED_ROUTES
from tests.support.harness import ADMIN_KEY, Harness, KintsugiFactory


async def new_key(harness: Harness, role: str, tenant_id: str | None = None) -> dict[str, str]:
    if tenant_id is None:
        tenant = await harness.http.post("/v1/tenants", json={"name": "acme"}, headers=harness.admin)
        assert tenant.status_code == 201, tenant.text
        tenant_id = tenant.json()["id"]
    key = await harness.http.post("/v1/keys", json={"tenant_id": tenant_id, "role": role}, headers=harness.admin)
    assert key.status_code == 201, key.text
    return {"Authorization": f"Bearer {key.json()['key']}", "tenant": tenant_id, "id": key.json()["id"]}


def auth(key: dict[str, str]) -> dict[str, str]:
    return {"Authorization": key["Authorization"]}


async def visible_jobs(harness: Harness, key: dict[str, str], at_least: int, **params: str) -> list[dict[str, str]]:
    """The tenant's job list once it shows `at_least` jobs: visibility lags the workflows a little."""
    for _ in range(100):
        data: list[dict[str, str]] = (await harness.http.get("/v1/jobs", params=params, headers=auth(key))).json()[
            "data"
        ]
        if len(data) >= at_least:
            return data
        await asyncio.sleep(0.05)
    return data


async def test_health_and_readiness(kintsugi_db: Harness) -> None:
    assert (await kintsugi_db.http.get("/healthz")).json() == {"status": "ok"}
    ready = await kintsugi_db.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "temporal": "ok", "worker": "ok"}


async def test_an_api_whose_worker_stopped_is_not_ready(kintsugi: Harness) -> None:
    assert (await kintsugi.http.get("/readyz")).status_code == 200  # connects, and starts the API's worker
    worker = kintsugi.app.state.api_worker
    worker.cancel()
    await asyncio.wait([worker])

    ready = await kintsugi.http.get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["checks"]["worker"] == "error: stopped"


async def test_app_key_runs_jobs_of_its_own_tenant_only(kintsugi_db: Harness) -> None:
    app_key = await new_key(kintsugi_db, "app")
    other = await new_key(kintsugi_db, "app")

    mine = await kintsugi_db.http.post(
        "/v1/jobs", json={"model": "sim-1", "messages": HELLO}, headers={**auth(app_key), "Prefer": "wait=10"}
    )
    assert mine.status_code == 200, mine.text
    job_id = mine.json()["id"]

    assert (await kintsugi_db.http.get(f"/v1/jobs/{job_id}", headers=auth(app_key))).status_code == 200
    for method, path, body in (
        ("GET", f"/v1/jobs/{job_id}", None),
        ("POST", f"/v1/jobs/{job_id}/cancel", None),
        ("POST", f"/v1/jobs/{job_id}/repair", {"action": "retry"}),
    ):
        response = await kintsugi_db.http.request(method, path, headers=auth(other), json=body)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "job_not_found"
    assert [job["id"] for job in await visible_jobs(kintsugi_db, app_key, 1)] == [job_id]
    listed = (await kintsugi_db.http.get("/v1/jobs", headers=auth(other))).json()
    assert listed["data"] == []


async def test_roles_are_enforced(kintsugi_db: Harness) -> None:
    viewer = await new_key(kintsugi_db, "viewer")
    app_key = await new_key(kintsugi_db, "app", viewer["tenant"])

    submit = await kintsugi_db.http.post("/v1/jobs", json={"model": "sim-1", "messages": HELLO}, headers=auth(viewer))
    assert submit.status_code == 403
    assert submit.json()["error"]["code"] == "forbidden"
    assert (await kintsugi_db.http.get("/v1/jobs", headers=auth(viewer))).status_code == 200
    for key in (viewer, app_key):
        tenants = await kintsugi_db.http.post("/v1/tenants", json={"name": "x"}, headers=auth(key))
        assert tenants.status_code == 403


async def test_missing_wrong_and_revoked_keys_are_401(kintsugi_db: Harness) -> None:
    key = await new_key(kintsugi_db, "app")
    assert (await kintsugi_db.http.get("/v1/jobs")).json()["error"]["code"] == "unauthorized"
    wrong = await kintsugi_db.http.get("/v1/jobs", headers={"Authorization": "Bearer ks_nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert (await kintsugi_db.http.get("/v1/jobs", headers=auth(key))).status_code == 200

    revoked = await kintsugi_db.http.delete(f"/v1/keys/{key['id']}", headers=kintsugi_db.admin)

    assert revoked.status_code == 204
    assert (await kintsugi_db.http.get("/v1/jobs", headers=auth(key))).status_code == 401
    again = await kintsugi_db.http.delete(f"/v1/keys/{key['id']}", headers=kintsugi_db.admin)
    assert again.status_code == 404


async def test_key_for_unknown_tenant_is_404(kintsugi_db: Harness) -> None:
    response = await kintsugi_db.http.post(
        "/v1/keys", json={"tenant_id": "ten_missing", "role": "app"}, headers=kintsugi_db.admin
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "tenant_not_found"


async def test_key_for_a_tenant_id_no_tenant_can_have_is_404(kintsugi_db: Harness) -> None:
    # PostgreSQL text cannot hold a NUL: no tenant has this id, and asking the database would fail the query.
    response = await kintsugi_db.http.post(
        "/v1/keys", json={"tenant_id": "ten_\x00", "role": "app"}, headers=kintsugi_db.admin
    )

    assert (response.status_code, response.json()["error"]["code"]) == (404, "tenant_not_found")


async def test_repeated_idempotency_key_returns_the_same_job(kintsugi_db: Harness) -> None:
    order = uuid.uuid4().hex  # keys live as long as the job's history, on a server shared by the session
    body = {"model": "primary", "messages": HELLO, "idempotency_key": f"order-{order}"}
    first = await kintsugi_db.submit(body, wait=10)
    second = await kintsugi_db.submit(body, wait=10)

    assert first.json()["id"] == second.json()["id"]
    assert second.json()["status"] == "succeeded"
    assert kintsugi_db.upstream.calls(kintsugi_db.model("a")) == 1  # the repeat ran nothing
    other = await kintsugi_db.submit({**body, "idempotency_key": f"order-{order}-2"}, wait=10)
    assert other.json()["id"] != first.json()["id"]
    assert kintsugi_db.upstream.calls(kintsugi_db.model("a")) == 2


async def test_submit_without_wait_is_202_with_location(kintsugi_db: Harness) -> None:
    response = await kintsugi_db.submit({"model": "sim-1", "messages": HELLO, "metadata": {"user": "u1"}})

    assert response.status_code == 202
    job = response.json()
    assert job["status"] in ("queued", "running", "succeeded")
    assert job["metadata"] == {"user": "u1"}
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    done = await kintsugi_db.wait_status(job["id"], "succeeded")
    assert done["result"]["content"].startswith("[simulated]")


async def test_list_filters_and_pages(kintsugi_db: Harness) -> None:
    key = await new_key(kintsugi_db, "app")
    kintsugi_db.upstream.configure(kintsugi_db.model("a"), fail_always=True, status=400)
    ok_ids = set()
    for _ in range(3):
        response = await kintsugi_db.http.post(
            "/v1/jobs", json={"model": "sim-1", "messages": HELLO}, headers={**auth(key), "Prefer": "wait=10"}
        )
        ok_ids.add(response.json()["id"])
    failed = await kintsugi_db.http.post(
        "/v1/jobs", json={"model": "primary", "messages": HELLO}, headers={**auth(key), "Prefer": "wait=10"}
    )
    assert failed.json()["status"] == "failed"

    succeeded = await visible_jobs(kintsugi_db, key, 3, status="succeeded", model="sim-1")
    assert {job["id"] for job in succeeded} == ok_ids
    assert [job["id"] for job in await visible_jobs(kintsugi_db, key, 1, status="failed")] == [failed.json()["id"]]

    page_one = (await kintsugi_db.http.get("/v1/jobs", params={"limit": 2}, headers=auth(key))).json()
    assert len(page_one["data"]) == 2
    assert page_one["next_cursor"]
    page_two = (
        await kintsugi_db.http.get(
            "/v1/jobs", params={"limit": 2, "cursor": page_one["next_cursor"]}, headers=auth(key)
        )
    ).json()
    seen = [job["id"] for job in page_one["data"] + page_two["data"]]
    assert len(seen) == len(set(seen)) == 4


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 422, "validation_error"),
        (b'{"model": "sim-1", "messages": []}', 422, "validation_error"),
        (b'{"model": "sim-1", "messages": [{"role": "robot", "content": "x"}]}', 422, "validation_error"),
        (b'{"model": "sim-1", "messages": "hello"}', 422, "validation_error"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', 422, "validation_error"),
        (
            b'{"model": "sim-1", "messages": [{"role": "user", "content": "x"}], "params": {"temperature": 9}}',
            422,
            "validation_error",
        ),
        (
            b'{"model": "sim-1", "messages": [{"role": "user", "content": "x"}], "on_exhausted": "explode"}',
            422,
            "validation_error",
        ),
        (b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', 404, "unknown_model"),
        (b"[]", 422, "validation_error"),
    ],
)
async def test_bad_job_input_is_4xx_with_a_code_and_starts_nothing(
    kintsugi_db: Harness, body: bytes, status: int, code: str
) -> None:
    key = await new_key(kintsugi_db, "app")
    response = await kintsugi_db.http.post(
        "/v1/jobs", content=body, headers={**auth(key), "Content-Type": "application/json"}
    )

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    good = await kintsugi_db.http.post("/v1/jobs", json={"model": "sim-1", "messages": HELLO}, headers=auth(key))
    # Once the good job is visible, a job started by the bad request would be too.
    assert [job["id"] for job in await visible_jobs(kintsugi_db, key, 1)] == [good.json()["id"]]


async def test_oversize_body_is_413(kintsugi_db: Harness) -> None:
    huge = {"model": "sim-1", "messages": [{"role": "user", "content": "x" * 1_100_000}]}

    response = await kintsugi_db.submit(huge)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/jobs/job_doesnotexist", {}, 404, "job_not_found"),
        ("/v1/jobs", {"status": "exploded"}, 422, "validation_error"),
        ("/v1/jobs", {"limit": "0"}, 422, "validation_error"),
        ("/v1/jobs", {"cursor": "%%%not-base64"}, 400, "invalid_cursor"),
        ("/v1/jobs", {"model": "x' OR 1=1"}, 400, "invalid_filter"),
        ("/v1/nothing-here", {}, 404, "not_found"),
    ],
)
async def test_bad_reads_are_4xx_with_a_code(
    kintsugi_db: Harness, path: str, params: dict[str, str], status: int, code: str
) -> None:
    response = await kintsugi_db.http.get(path, params=params, headers=kintsugi_db.admin)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_a_cursor_that_does_not_decode_is_400(kintsugi_db: Harness) -> None:
    response = await kintsugi_db.http.get("/v1/jobs?cursor=%00%ff", headers=kintsugi_db.admin)

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_cursor")


async def test_bad_repair_input(kintsugi_db: Harness) -> None:
    job = (await kintsugi_db.submit({"model": "sim-1", "messages": HELLO}, wait=10)).json()
    url = f"/v1/jobs/{job['id']}/repair"

    no_model = await kintsugi_db.http.post(url, json={"action": "reroute"}, headers=kintsugi_db.admin)
    bad_action = await kintsugi_db.http.post(url, json={"action": "pray"}, headers=kintsugi_db.admin)

    assert (no_model.status_code, no_model.json()["error"]["code"]) == (422, "validation_error")
    assert (bad_action.status_code, bad_action.json()["error"]["code"]) == (422, "validation_error")


async def test_tenant_admin_keys_stay_inside_their_tenant(kintsugi_db: Harness) -> None:
    tenant_admin = await new_key(kintsugi_db, "admin")
    other_app = await new_key(kintsugi_db, "app")

    own = await kintsugi_db.http.post(
        "/v1/keys", json={"tenant_id": tenant_admin["tenant"], "role": "app"}, headers=auth(tenant_admin)
    )
    foreign = await kintsugi_db.http.post(
        "/v1/keys", json={"tenant_id": other_app["tenant"], "role": "app"}, headers=auth(tenant_admin)
    )
    revoke_foreign = await kintsugi_db.http.delete(f"/v1/keys/{other_app['id']}", headers=auth(tenant_admin))
    new_tenant = await kintsugi_db.http.post("/v1/tenants", json={"name": "mine"}, headers=auth(tenant_admin))

    assert own.status_code == 201
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "tenant_not_found")
    assert (revoke_foreign.status_code, revoke_foreign.json()["error"]["code"]) == (404, "key_not_found")
    assert (new_tenant.status_code, new_tenant.json()["error"]["code"]) == (403, "forbidden")
    assert (await kintsugi_db.http.get("/v1/jobs", headers=auth(other_app))).status_code == 200
    own_key = {"Authorization": f"Bearer {own.json()['key']}"}
    assert (await kintsugi_db.http.get("/v1/jobs", headers=own_key)).status_code == 200


async def test_temporal_down_is_503_and_not_ready(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings(
        env="test",
        admin_api_key=ADMIN_KEY,
        database_url=sqlite_url,
        temporal_address=f"127.0.0.1:{free_port()}",  # nothing listens there
        routes_file=SHIPPED_ROUTES,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kintsugi") as http,
    ):
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        submit = await http.post("/v1/jobs", json={"model": "sim-1", "messages": HELLO}, headers=headers)
        read = await http.get("/v1/jobs/job_x", headers=headers)
        ready = await http.get("/readyz")

    assert (submit.status_code, submit.json()["error"]["code"]) == (503, "temporal_unavailable")
    assert (read.status_code, read.json()["error"]["code"]) == (503, "temporal_unavailable")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["temporal"].startswith("error")


async def test_a_job_input_too_large_for_history_is_413(make_kintsugi: KintsugiFactory, sqlite_url: str) -> None:
    async with make_kintsugi(sqlite_url, max_body_bytes=5_000_000) as kintsugi:
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 2_000_000}}
        body = {"model": "sim-1", "messages": [{"role": "user", "content": [image]}]}

        response = await kintsugi.submit(body)

        assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")
        assert "by URL" in response.json()["error"]["message"]
