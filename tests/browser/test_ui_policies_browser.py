"""`/ui/policies` in Debian's Chromium, driven by Playwright against a real Kintsugi served over HTTP: an admin
writes a policy, gets a malformed document refused beside the field, fixes it, reads the diff of the new version
and dry-runs a prompt with an e-mail address in it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect

from tests.api.test_api import new_key
from tests.browser.test_ui_browser import PHONE, WIDE, chromium, chromium_path, screenshot
from tests.support.harness import Harness, KintsugiFactory

__all__ = ["chromium", "chromium_path"]  # fixtures, shared with the UI's other browser test

LOG_PII = "guardrails: {input: {pii: {action: log}}}"
BAD_PII = "guardrails: {input: {pii: {action: shout}}}"
REDACT_PII = "guardrails: {input: {pii: {action: redact}}}"


@pytest.fixture
async def policies_kintsugi(make_kintsugi: KintsugiFactory, sqlite_url: str) -> AsyncIterator[Harness]:
    # No job runs here: a dry run calls nothing, so no worker is needed.
    async with make_kintsugi(sqlite_url, run_worker=False) as harness:
        yield harness


async def fits(page: Page) -> bool:
    """Whether the page fits its viewport's width (nothing to scroll sideways)."""
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def test_an_admin_writes_fixes_and_dry_runs_a_policy(policies_kintsugi: Harness, chromium: Browser) -> None:
    harness = policies_kintsugi
    admin = await new_key(harness, "admin")

    async with harness.serve_http() as base_url:
        page = await chromium.new_page(viewport=WIDE)
        await page.goto(f"{base_url}/ui/login")
        await page.get_by_label("API key").fill(admin["Authorization"].removeprefix("Bearer "))
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(f"{base_url}/ui/")

        await page.get_by_role("link", name="Policies").click()
        await page.wait_for_url(f"{base_url}/ui/policies")
        await page.get_by_label("Name", exact=True).fill("support-bot")
        await page.get_by_label("Document (YAML or JSON)").fill(LOG_PII)
        await page.get_by_role("button", name="Create policy").click()
        await page.wait_for_url(f"{base_url}/ui/policies/pol_*")
        await expect(page.locator("#current-version")).to_have_attribute("data-version", "1")

        document = page.get_by_label("Document (YAML or JSON)")
        await document.fill(BAD_PII)
        await page.get_by_role("button", name="Save as version 2").click()
        error = page.locator(".field:has(#document) > #document-error")  # in the field's own box, below it
        await expect(error).to_contain_text("guardrails.input.pii.action: Input should be 'block', 'redact' or 'log'")
        await expect(document).to_have_value(BAD_PII)  # what was typed, kept
        await expect(document).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#current-version")).to_have_attribute("data-version", "1")

        await document.fill(REDACT_PII)
        await page.get_by_role("button", name="Save as version 2").click()
        await expect(page.locator("#current-version")).to_have_attribute("data-version", "2")
        await expect(page.locator("#document-error")).to_have_count(0)
        newest = page.locator('details.version[data-version="2"]')
        await expect(newest).to_have_attribute("open", "")
        await expect(newest.locator(".diff-del")).to_have_text(["-      action: log"])
        await expect(newest.locator(".diff-add")).to_have_text(["+      action: redact"])

        await page.get_by_label("Model").select_option("sim-1")
        await page.get_by_label("Prompt").fill("Please send the invoice to alice@example.com by Friday.")
        await page.get_by_role("button", name="Evaluate").click()
        decision = page.locator("#decision")
        await expect(decision).to_have_attribute("data-allowed", "true")
        redacted = page.locator("#redacted-prompt")
        await expect(redacted).to_contain_text("[EMAIL]")
        assert "alice@example.com" not in await redacted.inner_text()
        await expect(page.locator("#decision-cost")).not_to_be_empty()
        await expect(page.locator("#decision-reasons")).to_contain_text("pii")
        assert page.url.startswith(f"{base_url}/ui/policies/pol_")  # swapped in place by htmx, no page load

        await screenshot(page, "policies")
        await page.set_viewport_size(PHONE)
        assert await fits(page), "the policy page scrolls sideways at 390 px"
        await page.goto(f"{base_url}/ui/policies")
        assert await fits(page), "the policy list scrolls sideways at 390 px"
        await expect(page.locator('tr[data-policy="support-bot"] td[data-version="2"]')).to_be_visible()
