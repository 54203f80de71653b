"""A whole Kintsugi in one test: its own task queue, routes file, worker and API over a real Temporal server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities.exports.outbox import ExportActivities
from activities.exports.registry import build_sinks, close_sinks
from api.app import create_app
from client.connect import connect
from ops.processes import Child
from ops.waits import free_port, wait_http_ok
from settings import Settings
from store.engine import create_engine, session_factory
from store.models import EventLog, ModelCostLog, PromptSignature
from tests.support.fake_upstream import FakeUpstream
from worker import build_activities, build_worker

ADMIN_KEY = "test-admin-key"
UPSTREAM_KEY_ENV = "KINTSUGI_TEST_UPSTREAM_KEY"
FAST_RETRY = {"max_attempts": 3, "initial_interval_s": 0.05, "max_interval_s": 0.2, "backoff": 2.0}


def test_routes(upstream_url: str, prefix: str) -> dict[str, Any]:
    """Routes whose upstream model names are private to one harness, so faults set by a test stay in it."""
    up = {"provider": "up"}
    return {
        "providers": {
            "up": {
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": UPSTREAM_KEY_ENV,
                "timeout_s": 2,
                "retry": FAST_RETRY,
            },
            "up-local": {
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": UPSTREAM_KEY_ENV,
                "timeout_s": 2,
                "retry": FAST_RETRY,
                "call": "local",
            },
            "up-activity": {
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": UPSTREAM_KEY_ENV,
                "timeout_s": 2,
                "retry": FAST_RETRY,
                "call": "activity",
            },
            "claude": {
                "kind": "anthropic",
                "base_url": upstream_url,
                "api_key_env": UPSTREAM_KEY_ENV,
                "timeout_s": 2,
                "retry": FAST_RETRY,
            },
            "sim": {"kind": "simulator", "latency_ms": 1},
        },
        "routes": {
            "primary": [{**up, "model": f"{prefix}-a"}],
            "fallback": [{**up, "model": f"{prefix}-a"}, {**up, "model": f"{prefix}-b"}],
            "other": [{**up, "model": f"{prefix}-c"}],
            "activity": [{"provider": "up-activity", "model": f"{prefix}-a"}],
            "activity-fallback": [
                {"provider": "up-activity", "model": f"{prefix}-a"},
                {"provider": "up-activity", "model": f"{prefix}-b"},
            ],
            "local-fallback": [
                {"provider": "up-local", "model": f"{prefix}-a"},
                {"provider": "up-local", "model": f"{prefix}-b"},
            ],
            "priced": [{**up, "model": "gpt-4o-mini"}],
            "claude": [{"provider": "claude", "model": f"{prefix}-a"}, {**up, "model": f"{prefix}-b"}],
            "sim-1": [{"provider": "sim", "model": "sim-1"}],
            "claude-only": [{"provider": "claude", "model": f"{prefix}-a"}],
            "embed": [{**up, "model": f"{prefix}-e", "type": "embedding"}],
            "embed-sim": [{"provider": "sim", "model": "sim-embed", "type": "embedding"}],
        },
    }


@dataclass
class Harness:
    settings: Settings
    temporal: Client
    upstream: FakeUpstream
    http: httpx.AsyncClient
    app: FastAPI
    prefix: str

    def model(self, suffix: str) -> str:
        """The upstream model name behind a route: `a` (primary), `b` (fallback), `c` (other)."""
        return f"{self.prefix}-{suffix}"

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def submit(self, body: dict[str, Any], *, wait: float | None = None, **headers: str) -> httpx.Response:
        all_headers = {**self.admin, **headers}
        if wait is not None:
            all_headers["Prefer"] = f"wait={wait:g}"
        return await self.http.post("/v1/jobs", json=body, headers=all_headers)

    def process_env(self) -> dict[str, str]:
        """The environment of a `python -m worker` or API process serving this Kintsugi."""
        settings = self.settings
        return {
            **os.environ,
            "KINTSUGI_ENV": "test",
            "KINTSUGI_ADMIN_API_KEY": settings.admin_api_key,
            "KINTSUGI_DATABASE_URL": settings.effective_database_url,
            "KINTSUGI_TEMPORAL_ADDRESS": settings.temporal_address,
            "KINTSUGI_TASK_QUEUE": settings.task_queue,
            "KINTSUGI_ROUTES_FILE": str(settings.routes_file),
            "KINTSUGI_CODEC_KEY": settings.codec_key,
            "KINTSUGI_CODEC_PREVIOUS_KEYS": settings.codec_previous_keys,
        }

    @contextlib.contextmanager
    def worker_process(self, log: Path) -> Iterator[subprocess.Popen[bytes]]:
        """`python -m worker` for this Kintsugi in a process of its own (to kill it), output in `log`."""
        worker = Child.start("worker", [sys.executable, "-m", "worker"], output=log, env=self.process_env())
        try:
            yield worker.process
        finally:
            worker.stop()

    @contextlib.contextmanager
    def api_process(self, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
        """This Kintsugi's API (with its own worker, `api_worker`) in a process of its own (to kill it): the
        process and its base URL, once it answers `/readyz`."""
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port),
                   "--log-level", "warning"]  # fmt: skip
        env = {**self.process_env(), "KINTSUGI_API_PORT": str(port)}
        api = Child.start("api", command, output=log, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{url}/readyz", timeout_s=60, check=api.check)
            yield api.process, url
        finally:
            api.stop()

    @contextlib.asynccontextmanager
    async def serve_http(self) -> AsyncIterator[str]:
        """The API over real HTTP on `settings.api_port` (where workers relay streamed answers); yields its
        base URL. Runs on the test's event loop: the app's Temporal client belongs to it."""
        config = uvicorn.Config(self.app, port=self.settings.api_port, lifespan="off", log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        for _ in range(250):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start"
        try:
            yield f"http://127.0.0.1:{self.settings.api_port}"
        finally:
            server.should_exit = True
            await task

    async def cost_rows(self, job_id: str) -> list[ModelCostLog]:
        """The job's `model_cost_logs` rows, read straight from the database."""
        async with self._session() as session:
            stmt = select(ModelCostLog).where(col(ModelCostLog.job_id) == job_id)
            return list((await session.exec(stmt)).all())

    async def signatures(self, job_id: str) -> list[PromptSignature]:
        """The job's `prompt_signatures` rows (similarity's record of its prompt)."""
        async with self._session() as session:
            stmt = select(PromptSignature).where(col(PromptSignature.job_id) == job_id)
            return list((await session.exec(stmt)).all())

    async def events(self, job_id: str) -> list[EventLog]:
        """The job's `event_logs` rows in the order they were written."""
        async with self._session() as session:
            stmt = select(EventLog).where(col(EventLog.job_id) == job_id).order_by(col(EventLog.id))
            return list((await session.exec(stmt)).all())

    async def event_types(self, job_id: str) -> list[str]:
        return [row.type for row in await self.events(job_id)]

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        engine = create_engine(self.settings.effective_database_url)
        try:
            async with session_factory(engine)() as session:
                yield session
        finally:
            await engine.dispose()

    async def wait_status(self, job_id: str, *statuses: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """Poll the job until it reaches one of `statuses`; fail the test with its last state otherwise."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        job: dict[str, Any] = {}
        while asyncio.get_running_loop().time() < deadline:
            job = (await self.http.get(f"/v1/jobs/{job_id}", headers=self.admin)).json()
            if job.get("status") in statuses:
                return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached {statuses}; last: {job}")


KintsugiFactory = Callable[..., contextlib.AbstractAsyncContextManager["Harness"]]
"""The `make_kintsugi` fixture: `make_kintsugi(database_url, **settings_overrides)`."""


@contextlib.asynccontextmanager
async def running_kintsugi(
    *,
    tmp_path: Path,
    temporal: Client,
    temporal_address: str,
    upstream: FakeUpstream,
    database_url: str,
    run_worker: bool = True,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    prefix = uuid.uuid4().hex[:10]
    routes_file = tmp_path / f"routes-{prefix}.yaml"
    routes_file.write_text(yaml.safe_dump(test_routes(upstream.url, prefix)))
    settings = Settings(
        env="test",
        admin_api_key=ADMIN_KEY,
        database_url=database_url,
        temporal_address=temporal_address,
        task_queue=f"tq-{prefix}",
        routes_file=routes_file,
        data_dir=tmp_path,
        # The port `serve_http` listens on; the relay of streamed answers points there.
        api_port=free_port(),
        # Tests run workflows sandboxed, so non-determinism fails loudly.
        **{"workflow_sandbox": True, **overrides},
    )
    if settings.codec_key:
        # The session's shared client has no codec: this Kintsugi's worker and its tests need one with it.
        temporal = await connect(settings)
    engine = create_engine(database_url)
    app = create_app(settings)
    async with contextlib.AsyncExitStack() as stack:
        http_client = await stack.enter_async_context(httpx.AsyncClient())
        await stack.enter_async_context(app.router.lifespan_context(app))
        if run_worker:
            # In the API's process here, so it shares the API's flag cache: a flag a test sets through the API
            # is in force at once wherever its job runs (separate processes see it within the cache's TTL).
            activities = build_activities(
                settings,
                engine,
                http_client,
                flags=app.state.flags,
                policies=app.state.policies,
                rate_limiter=app.state.rate_limiter,
            )
            # The export activity for the sinks the overrides configure (a test starts the export workflows).
            sinks = build_sinks(settings, http_client, temporal=temporal, sessions=session_factory(engine))
            stack.callback(close_sinks, sinks)
            exports = ExportActivities(session_factory(engine), flags=app.state.flags, sinks=sinks) if sinks else None
            await stack.enter_async_context(build_worker(temporal, settings, activities, exports=exports))
        api = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kintsugi", timeout=60)
        )
        yield Harness(settings=settings, temporal=temporal, upstream=upstream, http=api, app=app, prefix=prefix)
    await engine.dispose()
