"""`/ui/jobs` and `/ui/traces/{id}` without a browser, on SQLite and PostgreSQL, against real jobs: the list and
its filters, live status, tenant scoping, the trace page, its span panel and its JSON download."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import httpx

from api.ui.formatting import usd
from tests.api.test_api import auth, new_key, visible_jobs
from tests.api.test_ui import browser, logged_in, plaintext
from tests.support.common import HELLO
from tests.support.harness import Harness

_ROWS = re.compile(r'<tr data-job="([^"]+)" data-status="([^"]+)">')


async def run_job(harness: Harness, key: dict[str, str], model: str, **body: Any) -> dict[str, Any]:
    response = await harness.http.post(
        "/v1/jobs",
        json={"model": model, "messages": HELLO, **body},
        headers={**auth(key), "Prefer": "wait=20"},
    )
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    return job


async def wait_status(harness: Harness, key: dict[str, str], job_id: str, status: str) -> None:
    """Until the tenant's job reads `status` (`Harness.wait_status` reads as the default tenant)."""
    for _ in range(400):
        job = (await harness.http.get(f"/v1/jobs/{job_id}", headers=auth(key))).json()
        if job.get("status") == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {status}; last: {job}")


def listed(page: httpx.Response) -> dict[str, str]:
    """Job id -> status, as the page's table shows them."""
    return dict(_ROWS.findall(page.text))


def field_error(page: httpx.Response, name: str) -> str:
    found = re.search(rf'<p id="{name}-error" class="field-error">([^<]+)</p>', page.text)
    assert found, f"no error beside {name}"
    return html.unescape(found.group(1))


async def test_the_job_list_shows_the_tenants_jobs_linked_to_their_traces(kintsugi_db: Harness) -> None:
    mine = await new_key(kintsugi_db, "app")
    theirs = await new_key(kintsugi_db, "app")
    ok = await run_job(kintsugi_db, mine, "primary")
    other = await run_job(kintsugi_db, theirs, "primary")
    await visible_jobs(kintsugi_db, mine, 1)

    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(mine))
        page = await client.get("/ui/jobs")

    assert page.status_code == 200
    assert "<title>Jobs · Kintsugi</title>" in page.text
    assert listed(page) == {ok["id"]: "succeeded"}
    assert f'href="/ui/traces/{ok["id"]}"' in page.text
    assert other["id"] not in page.text
    assert '<a href="/ui/jobs" aria-current="page">Jobs</a>' in page.text
    assert 'data-live="false"' in page.text and "hx-trigger" not in page.text  # nothing left to change


async def test_filters_by_status_and_model(kintsugi_db: Harness) -> None:
    key = await new_key(kintsugi_db, "app")
    kintsugi_db.upstream.configure(kintsugi_db.model("c"), fail_always=True, status=400)
    ok = await run_job(kintsugi_db, key, "primary")
    failed = await run_job(kintsugi_db, key, "other")
    assert failed["status"] == "failed"
    await visible_jobs(kintsugi_db, key, 1, status="failed")
    await visible_jobs(kintsugi_db, key, 2)

    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(key))
        by_status = await client.get("/ui/jobs", params={"status": "failed"})
        by_model = await client.get("/ui/jobs", params={"model": "primary"})
        nothing = await client.get("/ui/jobs", params={"model": "no-such-route"})

    assert listed(by_status) == {failed["id"]: "failed"}
    assert '<option value="failed" selected>' in by_status.text
    assert listed(by_model) == {ok["id"]: "succeeded"}
    assert 'value="primary"' in by_model.text  # what was typed stays in the field
    assert listed(nothing) == {} and 'id="no-jobs"' in nothing.text


async def test_a_bad_filter_is_refused_beside_its_field_never_a_500(kintsugi_db: Harness) -> None:
    key = await new_key(kintsugi_db, "viewer")

    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(key))
        status = await client.get("/ui/jobs", params={"status": "exploded"})
        model = await client.get("/ui/jobs", params={"model": "x' OR TenantId != '"})
        long_model = await client.get("/ui/jobs", params={"model": "m" * 201})
        cursor = await client.get("/ui/jobs", params={"cursor": "not a cursor!"})
        rows = await client.get("/ui/jobs/rows", params={"status": "exploded"})

    assert status.status_code == 400
    assert "Choose one of" in field_error(status, "status")
    assert 'aria-describedby="status-error"' in status.text
    assert model.status_code == 400 and "Not a model name" in field_error(model, "model")
    assert long_model.status_code == 400 and "200 characters" in field_error(long_model, "model")
    assert cursor.status_code == 400 and 'id="jobs-problem"' in cursor.text
    assert 'href="/ui/jobs"' in cursor.text
    assert rows.status_code == 400


async def test_rows_poll_while_a_job_is_unfinished_and_stop_once_it_ends(kintsugi_db: Harness) -> None:
    kintsugi_db.upstream.configure(kintsugi_db.model("a"), fail_always=True, status=500)
    key = await new_key(kintsugi_db, "admin")
    job = (
        await kintsugi_db.http.post(
            "/v1/jobs", json={"model": "primary", "messages": HELLO, "on_exhausted": "park"}, headers=auth(key)
        )
    ).json()
    await wait_status(kintsugi_db, key, job["id"], "parked")
    await visible_jobs(kintsugi_db, key, 1, status="parked")

    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(key))
        parked = await client.get("/ui/jobs")
        cancel = await kintsugi_db.http.post(f"/v1/jobs/{job['id']}/cancel", headers=auth(key))
        assert cancel.status_code in (200, 202), cancel.text
        await visible_jobs(kintsugi_db, key, 1, status="cancelled")
        rows = await client.get("/ui/jobs/rows", headers={"HX-Request": "true"})

    assert listed(parked) == {job["id"]: "parked"}
    assert 'hx-get="/ui/jobs/rows?" hx-trigger="every 2s"' in parked.text and 'data-live="true"' in parked.text
    assert "<tbody" in rows.text and "<html" not in rows.text
    assert listed(rows) == {job["id"]: "cancelled"}
    assert "hx-trigger" not in rows.text  # htmx swaps in a body without the trigger: polling stops


async def test_the_trace_page_shows_the_reroute_the_answer_and_the_cost(kintsugi_db: Harness) -> None:
    kintsugi_db.upstream.configure(kintsugi_db.model("a"), fail_always=True, status=503)
    app = await new_key(kintsugi_db, "app")
    key = await new_key(kintsugi_db, "viewer", app["tenant"])  # a viewer reads what the app's key ran
    job = await run_job(kintsugi_db, app, "fallback")
    assert job["status"] == "succeeded"
    api_trace = (await kintsugi_db.http.get(f"/v1/jobs/{job['id']}/trace", headers=auth(key))).json()

    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(key))
        page = await client.get(f"/ui/traces/{job['id']}")
        download = await client.get(f"/ui/traces/{job['id']}.json")

    assert page.status_code == 200, page.text
    assert f"<title>Trace of {job['id']} · Kintsugi</title>" in page.text
    deployment = f"up/{kintsugi_db.model('b')}"
    assert re.search(rf'id="final-deployment">{re.escape(deployment)}<', page.text)
    assert 'id="attempt-count" data-count="4"' in page.text
    assert 'id="reroute-count" data-count="1"' in page.text
    assert "3 attempts" in page.text and ">failed<" in page.text
    assert f"up/{kintsugi_db.model('a')} → {deployment}" in html.unescape(page.text)
    cost = re.search(r'id="trace-cost" data-usd="([^"]+)">([^<]+)<', page.text)
    assert cost and float(cost.group(1)) == api_trace["cost_usd"] and cost.group(2) == usd(api_trace["cost_usd"])
    assert 'id="trace-unpriced">+ 1 unpriced call<' in page.text  # the harness's upstream models have no price
    settings = kintsugi_db.settings
    temporal_ui = f"{settings.temporal_ui_base_url}/namespaces/{settings.temporal_namespace}/workflows/{job['id']}"
    assert f'href="{temporal_ui}"' in page.text
    assert download.status_code == 200
    assert download.headers["content-disposition"] == f'attachment; filename="trace-{job["id"]}.json"'
    assert download.json() == api_trace


async def test_a_span_is_shown_in_the_panel_by_link_and_by_htmx(kintsugi_db: Harness) -> None:
    key = await new_key(kintsugi_db, "app")
    job = await run_job(kintsugi_db, key, "priced")
    trace = (await kintsugi_db.http.get(f"/v1/jobs/{job['id']}/trace", headers=auth(key))).json()
    call = next(span for span in trace["root"]["children"] if span["attributes"].get("model") == "gpt-4o-mini")

    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(key))
        first = await client.get(f"/ui/traces/{job['id']}")
        linked = await client.get(f"/ui/traces/{job['id']}", params={"span": call["span_id"]})
        swapped = await client.get(f"/ui/traces/{job['id']}/spans/{call['span_id']}", headers={"HX-Request": "true"})
        missing = await client.get(f"/ui/traces/{job['id']}/spans/nope")

    assert '<aside id="span-panel" class="panel span-panel"' in first.text  # the job itself until one is chosen
    assert f'aria-labelledby="span-title" data-span-id="{trace["root"]["span_id"]}"' in first.text
    for page in (linked, swapped):
        assert f'data-span-id="{call["span_id"]}"' in page.text
        assert f"<dt>Cost</dt><dd>{usd(call['attributes']['cost_usd'])}</dd>" in page.text
        tokens = f"{call['attributes']['input_tokens']:,} in · {call['attributes']['output_tokens']:,} out"
        assert f"<dt>Tokens</dt><dd>{tokens}</dd>" in page.text
        assert "<dt>Deployment</dt><dd>up/gpt-4o-mini</dd>" in page.text
    assert "<html" not in swapped.text and 'hx-swap-oob="true"' in swapped.text
    assert missing.status_code == 404


async def test_another_tenants_trace_is_the_ui_404_page(kintsugi_db: Harness) -> None:
    mine = await new_key(kintsugi_db, "admin")
    theirs = await new_key(kintsugi_db, "app")
    other = await run_job(kintsugi_db, theirs, "primary")

    async with browser(kintsugi_db) as client:
        await logged_in(client, plaintext(mine))
        pages = await asyncio.gather(
            client.get(f"/ui/traces/{other['id']}"),
            client.get(f"/ui/traces/{other['id']}.json"),
            client.get(f"/ui/traces/{other['id']}/spans/1"),
            client.get("/ui/traces/job_does_not_exist"),
        )

    for page in pages:
        assert page.status_code == 404
        assert "<title>No such job · Kintsugi</title>" in page.text
        assert "echo: hello" not in page.text


async def test_the_pages_need_a_session(kintsugi_db: Harness) -> None:
    async with browser(kintsugi_db) as client:
        for path in ("/ui/jobs", "/ui/jobs/rows", "/ui/traces/job_x", "/ui/traces/job_x.json"):
            response = await client.get(path)
            assert (response.status_code, response.headers["location"]) == (303, "/ui/login"), path
