"""The web UI in Debian's Chromium, driven by Playwright, against a real Kintsugi served over HTTP (a real
Temporal dev server, worker and fake upstream): what a person does, and the README's screenshots."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from api.ui.dashboard import day_window
from api.ui.formatting import usd
from tests.api.test_api import new_key
from tests.support.common import HELLO, REPO
from tests.support.harness import Harness, KintsugiFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = REPO / "docs" / "screenshots"
WIDE: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture
def chromium_path() -> Path:
    """Debian's Chromium, never a downloaded one (the suite needs no network); skipped when it is missing,
    unless CI requires it."""
    if not CHROMIUM.exists():
        if os.environ.get("KINTSUGI_TEST_REQUIRE_BROWSER"):
            pytest.fail(f"KINTSUGI_TEST_REQUIRE_BROWSER is set but {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI sets KINTSUGI_TEST_REQUIRE_BROWSER")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return CHROMIUM


@pytest.fixture
async def chromium(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def ui_kintsugi(make_kintsugi: KintsugiFactory, sqlite_url: str) -> AsyncIterator[Harness]:
    # Flags are re-read on every use (DESIGN.md allows up to 5 s), so a toggle applies to the very next job of
    # the test's worker, which holds a flag cache of its own.
    async with make_kintsugi(sqlite_url, flag_cache_ttl_s=0) as harness:
        yield harness


async def run_job(harness: Harness, key: dict[str, str], model: str) -> dict[str, Any]:
    response = await harness.http.post(
        "/v1/jobs",
        json={"model": model, "messages": HELLO},
        headers={"Authorization": key["Authorization"], "Prefer": "wait=20"},
    )
    job: dict[str, Any] = response.json()
    assert response.status_code == 200 and job["status"] == "succeeded", response.text
    return job


async def todays_costs(harness: Harness, key: dict[str, str]) -> dict[str, Any]:
    start, end = day_window(datetime.now(UTC))
    response = await harness.http.get(
        "/v1/costs",
        params={"group_by": "model", "from": start.isoformat(), "to": end.isoformat()},
        headers={"Authorization": key["Authorization"]},
    )
    assert response.status_code == 200, response.text
    return response.json()["total"]  # type: ignore[no-any-return]


async def calls_today(page: Page, base_url: str) -> int:
    await page.goto(f"{base_url}/ui/")
    return int(await page.locator("#calls-today").get_attribute("data-count") or "-1")


async def toggle(page: Page, flag: str, label: str, *, now_enabled: bool) -> None:
    """Press the flag's button and wait for htmx to swap its row in place (no page load)."""
    row = page.locator(f"#flag-{flag}")
    await row.get_by_role("button", name=f"{label} ({flag})").click()
    await page.locator(f'#flag-{flag}[data-enabled="{str(now_enabled).lower()}"]').wait_for()


async def screenshot(page: Page, name: str) -> None:
    """The page at both widths: into the README's `docs/screenshots/` with `KINTSUGI_SCREENSHOTS=1` (so a
    test run leaves the tree as it was), else only taken, which still proves the page renders at each width."""
    keep = os.environ.get("KINTSUGI_SCREENSHOTS") == "1"
    for size, suffix in ((WIDE, "1280"), (PHONE, "390")):
        await page.set_viewport_size(size)
        await page.screenshot(path=SCREENSHOTS / f"{name}-{suffix}.png" if keep else None, full_page=True)
    await page.set_viewport_size(WIDE)


async def test_a_tenant_admin_reads_its_spend_and_switches_cost_tracking(
    ui_kintsugi: Harness, chromium: Browser
) -> None:
    harness = ui_kintsugi
    admin = await new_key(harness, "admin")
    await run_job(harness, admin, "priced")  # a model with a catalogue price: spend
    await run_job(harness, admin, "priced")
    await run_job(harness, admin, "primary")  # a model without one: called out as unpriced

    async with harness.serve_http() as base_url:
        page = await chromium.new_page(viewport=WIDE)
        await page.goto(f"{base_url}/ui/")
        assert page.url == f"{base_url}/ui/login"  # no session yet
        await page.get_by_label("API key").fill(admin["Authorization"].removeprefix("Bearer "))
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(f"{base_url}/ui/")

        costs = await todays_costs(harness, admin)
        spend = page.locator("#spend-today")
        assert costs["spend_usd"] > 0
        assert float(await spend.get_attribute("data-usd") or "nan") == costs["spend_usd"]
        assert await spend.inner_text() == usd(costs["spend_usd"])
        assert await calls_today(page, base_url) == costs["calls"] == 3
        warning = await page.locator("#unpriced-warning").inner_text()
        assert "1 call had no known price and is not in the spend" in warning
        await screenshot(page, "dashboard")

        await page.get_by_role("link", name="Flags").click()
        await page.wait_for_url(f"{base_url}/ui/flags")
        await toggle(page, "track_model_costs", "Turn off", now_enabled=False)
        await screenshot(page, "flags")  # with the tenant's own override showing
        untracked = await run_job(harness, admin, "priced")
        assert untracked["status"] == "succeeded"
        assert await calls_today(page, base_url) == 3  # the job ran, and no cost row was written for it

        await page.goto(f"{base_url}/ui/flags")
        await toggle(page, "track_model_costs", "Turn on", now_enabled=True)
        await run_job(harness, admin, "priced")
        assert await calls_today(page, base_url) == 4
        assert (
            float(await page.locator("#spend-today").get_attribute("data-usd") or "nan")
            == (await todays_costs(harness, admin))["spend_usd"]
        )
