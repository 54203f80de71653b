"""The Temporal UI shows a job's encrypted prompt decoded, in Debian's Chromium: the platform admin logs into
Kintsugi's UI, and the dev server's UI, set to include cross-origin credentials, sends that session cookie along
to Kintsugi's `/ui/codec` (a dev server of the test's own with its UI, the API over HTTP with its worker)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, expect

from cli import codec_endpoint
from client.connect import connect
from ops.devserver import start_dev_server
from ops.processes import ProcessGroup
from ops.waits import free_port
from settings import Settings
from tests.browser.test_ui_browser import WIDE, chromium, chromium_path
from tests.support.fake_upstream import FakeUpstream
from tests.support.harness import ADMIN_KEY, Harness, running_kintsugi

__all__ = ["chromium", "chromium_path"]  # fixtures, shared with the UI's other browser tests

UI_TIMEOUT_MS = 30_000
"""The Temporal UI loads the history, then decodes its payloads through the codec: a wait on what it shows."""


@dataclass(frozen=True)
class EncryptedWithTemporalUi:
    harness: Harness
    api_url: str
    temporal_ui_url: str
    codec_endpoint: str


@asynccontextmanager
async def serve(app: FastAPI, port: int) -> AsyncIterator[None]:
    """The app over HTTP on `port`, chosen before the dev server starts (its UI is told the codec's URL);
    `Harness.serve_http` takes the port the harness picked, later."""
    server = uvicorn.Server(uvicorn.Config(app, port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not (server.started or task.done()):
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def encrypted_with_temporal_ui(
    tmp_path: Path, upstream: FakeUpstream, sqlite_url: str
) -> AsyncIterator[EncryptedWithTemporalUi]:
    """The session's dev server is headless: this one has its UI, preset with the codec as `make up` does."""
    api_url = f"http://127.0.0.1:{free_port()}"
    ui_port = free_port()
    endpoint = codec_endpoint(api_url)
    (tmp_path / "temporal").mkdir()
    processes = ProcessGroup(log_dir=tmp_path / "temporal")
    try:
        server = await asyncio.to_thread(
            start_dev_server, processes, db_file=None, ui_port=ui_port, codec_endpoint=endpoint
        )
        plain = await connect(Settings(env="test", admin_api_key="unused", temporal_address=server.address))
        async with running_kintsugi(
            tmp_path=tmp_path,
            temporal=plain,
            temporal_address=server.address,
            upstream=upstream,
            database_url=sqlite_url,
            codec_key=base64.b64encode(os.urandom(32)).decode(),
            ui_port=ui_port,  # the Temporal UI's origin, which the codec answers CORS for
            ui_secure_cookies=False,  # plain http, as `make up` serves it
        ) as harness:
            async with serve(harness.app, int(api_url.rsplit(":", 1)[1])):
                yield EncryptedWithTemporalUi(harness, api_url, f"http://127.0.0.1:{ui_port}", endpoint)
    finally:
        processes.stop_all()


async def test_the_temporal_ui_shows_the_prompt_decoded_with_the_admins_ui_session(
    encrypted_with_temporal_ui: EncryptedWithTemporalUi, chromium: Browser
) -> None:
    setup = encrypted_with_temporal_ui
    prompt = f"the launch date is 3 March {uuid.uuid4().hex}"
    job = (
        await setup.harness.submit({"model": "sim-1", "messages": [{"role": "user", "content": prompt}]}, wait=10)
    ).json()
    assert job["status"] == "succeeded", job
    run_id = (await setup.harness.temporal.get_workflow_handle(job["id"]).describe()).run_id

    context = await chromium.new_context(viewport=WIDE)
    page = await context.new_page()
    await page.goto(f"{setup.api_url}/ui/login")
    await page.get_by_label("API key").fill(ADMIN_KEY)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{setup.api_url}/ui/")
    # The Data Encoder's "use my browser setting" with "include cross-origin credentials" ticked, as the UI
    # keeps it (its persisted stores, JSON in localStorage): the dev server cannot preset the credentials.
    settings = {"overrideRemoteCodecConfiguration": True, "endpoint": setup.codec_endpoint, "includeCredentials": True}
    await context.add_init_script(
        f"if (location.origin === {json.dumps(setup.temporal_ui_url)}) {{"
        + "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(json.dumps(v))});" for k, v in settings.items())
        + "}"
    )
    decodes: list[int] = []  # the answers to the UI's decode POSTs (not their preflights)
    decode_url = f"{setup.codec_endpoint}/decode"
    page.on(
        "response",
        lambda r: decodes.append(r.status) if r.url.startswith(decode_url) and r.request.method == "POST" else None,
    )

    await page.goto(f"{setup.temporal_ui_url}/namespaces/default/workflows/{job['id']}/{run_id}/history")

    await expect(page.locator("body")).to_contain_text(prompt, timeout=UI_TIMEOUT_MS)
    assert decodes and set(decodes) == {200}, decodes
    await context.close()
