"""`/ui/jobs` and the trace viewer in Debian's Chromium, driven by Playwright against a real Kintsugi served over
HTTP: a person finds a job that was retried and rerouted, opens its trace, reads what went wrong and what it
cost, and opens a span's details; the README's screenshots of both pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from api.ui.formatting import usd
from tests.api.test_api import auth, new_key, visible_jobs
from tests.browser.test_ui_browser import PHONE, WIDE, chromium, chromium_path, screenshot
from tests.support import harness as harness_module
from tests.support.common import HELLO
from tests.support.harness import Harness, KintsugiFactory

__all__ = ["chromium", "chromium_path"]  # fixtures, shared with the UI's other browser tests

REROUTED = "priced-fallback"
"""A route whose fallback has a catalogue price, so the trace of a rerouted job has a cost to show."""


@pytest.fixture
async def traces_kintsugi(
    make_kintsugi: KintsugiFactory, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    routes = harness_module.test_routes

    def with_priced_fallback(upstream_url: str, prefix: str) -> dict[str, Any]:
        config = routes(upstream_url, prefix)
        config["routes"][REROUTED] = [
            {"provider": "up", "model": f"{prefix}-a"},
            {"provider": "up", "model": "gpt-4o-mini"},
        ]
        return config

    monkeypatch.setattr(harness_module, "test_routes", with_priced_fallback)
    async with make_kintsugi(sqlite_url) as harness:
        yield harness


async def run_job(harness: Harness, key: dict[str, str], model: str) -> dict[str, Any]:
    response = await harness.http.post(
        "/v1/jobs", json={"model": model, "messages": HELLO}, headers={**auth(key), "Prefer": "wait=20"}
    )
    job: dict[str, Any] = response.json()
    assert response.status_code == 200 and job["status"] == "succeeded", response.text
    return job


async def fits(page: Page) -> bool:
    """Whether the page fits its viewport's width (nothing to scroll sideways)."""
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def test_a_person_reads_the_trace_of_a_retried_and_rerouted_job(
    traces_kintsugi: Harness, chromium: Browser
) -> None:
    harness = traces_kintsugi
    key = await new_key(harness, "admin")
    harness.upstream.configure(harness.model("a"), fail_always=True, status=503)
    harness.upstream.configure(harness.model("c"), fail_always=True, status=400)
    await run_job(harness, key, "priced")
    failed_job = await harness.http.post(
        "/v1/jobs", json={"model": "other", "messages": HELLO}, headers={**auth(key), "Prefer": "wait=20"}
    )
    assert failed_job.json()["status"] == "failed", failed_job.text
    job = await run_job(harness, key, REROUTED)
    assert job["deployment"] == {"provider": "up", "model": "gpt-4o-mini"} and job["attempts"] == 4
    await visible_jobs(harness, key, 3)
    primary = f"up/{harness.model('a')}"

    async with harness.serve_http() as base_url:
        page = await chromium.new_page(viewport=WIDE)
        await page.goto(f"{base_url}/ui/login")
        await page.get_by_label("API key").fill(key["Authorization"].removeprefix("Bearer "))
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(f"{base_url}/ui/")

        await page.get_by_role("link", name="Jobs", exact=True).click()
        await page.wait_for_url(f"{base_url}/ui/jobs")
        row = page.locator(f'tr[data-job="{job["id"]}"]')
        await expect(row.get_by_text("succeeded")).to_be_visible()
        await expect(row.get_by_text(REROUTED)).to_be_visible()
        await expect(page.locator(f'tr[data-job="{failed_job.json()["id"]}"]')).to_contain_text("failed")
        await screenshot(page, "jobs")
        await page.set_viewport_size(PHONE)
        assert await fits(page), "the job list scrolls sideways at 390 px"
        await page.set_viewport_size(WIDE)

        await page.get_by_label("Model (the route the job asked for)").fill(REROUTED)
        await page.get_by_role("button", name="Filter").click()
        await expect(page.locator("tr[data-job]")).to_have_count(1)

        await row.get_by_role("link", name=job["id"]).click()
        await page.wait_for_url(f"{base_url}/ui/traces/{job['id']}")
        await expect(page).to_have_title(f"Trace of {job['id']} · Kintsugi")
        await expect(page.locator("#final-deployment")).to_have_text("up/gpt-4o-mini")
        await expect(page.locator("#trace-cost")).to_have_text(usd(job["cost_usd"]))
        assert job["cost_usd"] > 0
        failed = page.locator('.span-row[data-role="call"][data-status="error"]')
        await expect(failed).to_have_count(1)
        await expect(failed).to_contain_text(primary)
        await expect(failed.locator(".mark.bad")).to_have_text("failed")
        await expect(failed.get_by_text("3 attempts")).to_be_visible()
        reroute = page.locator('.span-row[data-role="reroute"]')
        await expect(reroute).to_contain_text(f"{primary} → up/gpt-4o-mini")
        answered = page.locator('.span-row[data-role="call"][data-status="ok"]')
        await expect(answered.get_by_text("final deployment")).to_be_visible()

        panel = page.locator("#span-panel")
        await failed.locator("a").click()
        await expect(panel.locator('[data-fact="Last failure"] dd')).to_contain_text("HTTP 503")
        await expect(panel.locator('[data-fact="Attempts"] dd')).to_have_text("3")
        await expect(panel.locator(".span-events")).to_contain_text("attempt 3 failed")
        await answered.locator("a").click()
        await expect(panel.locator('[data-fact="Cost"] dd')).to_have_text(usd(job["cost_usd"]))
        await expect(panel.locator('[data-fact="Tokens"] dd')).to_contain_text(f"{job['usage']['input_tokens']} in")
        await expect(panel.locator('[data-fact="Deployment"] dd')).to_have_text("up/gpt-4o-mini")
        assert page.url == f"{base_url}/ui/traces/{job['id']}"  # swapped in place by htmx, no page load
        await expect(answered).to_have_css("background-color", "rgb(247, 236, 210)")  # the selected row

        href = await page.locator("#trace-download").get_attribute("href")
        download = await page.request.get(f"{base_url}{href}")  # with the page's session cookie
        assert download.ok and (await download.json())["cost_usd"] == pytest.approx(job["cost_usd"])
        await expect(page.locator("#temporal-link")).to_have_attribute(
            "href", f"{harness.settings.temporal_ui_base_url}/namespaces/default/workflows/{job['id']}"
        )

        await failed.locator("a").click()  # the README's picture: what went wrong, in the panel
        await expect(panel).to_have_attribute("data-span-id", await failed.get_attribute("data-span-id") or "")
        await screenshot(page, "trace")
        await page.set_viewport_size(PHONE)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390, "the trace scrolls sideways"
        await expect(page.locator("#final-deployment")).to_be_visible()
