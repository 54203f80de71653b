"""A worker killed with SIGKILL mid-flight loses no job and bills none twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ops.processes import Child
from tests.support.harness import Harness, KintsugiFactory

JOBS = 8


@contextmanager
def worker_process(harness: Harness, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    settings = harness.settings
    env = {
        **os.environ,
        "KINTSUGI_ENV": "test",
        "KINTSUGI_ADMIN_API_KEY": settings.admin_api_key,
        "KINTSUGI_DATABASE_URL": settings.effective_database_url,
        "KINTSUGI_TEMPORAL_ADDRESS": settings.temporal_address,
        "KINTSUGI_TASK_QUEUE": settings.task_queue,
        "KINTSUGI_ROUTES_FILE": str(settings.routes_file),
    }
    worker = Child.start("worker", [sys.executable, "-m", "worker"], output=log, env=env)
    try:
        yield worker.process
    finally:
        worker.stop()


@pytest.mark.parametrize(
    "route",
    [
        "primary",  # calls as activities: retried once their start-to-close timeout passes
        "local-fallback",  # calls as local activities: retried once the workflow task times out (10 s)
    ],
)
async def test_sigkilled_worker_loses_nothing_and_bills_once(
    make_kintsugi: KintsugiFactory, sqlite_url: str, tmp_path: Path, route: str
) -> None:
    async with make_kintsugi(sqlite_url, run_worker=False) as kintsugi:
        slow = kintsugi.model("a")
        kintsugi.upstream.configure(slow, latency_ms=1500)
        log = tmp_path / "worker.log"
        with worker_process(kintsugi, log) as first:
            jobs = [
                (await kintsugi.submit({"model": route, "messages": [{"role": "user", "content": f"n{i}"}]})).json()
                for i in range(JOBS)
            ]
            for _ in range(200):  # every job's upstream call is in flight
                if kintsugi.upstream.calls(slow) >= JOBS:
                    break
                await asyncio.sleep(0.05)
            assert kintsugi.upstream.calls(slow) >= JOBS, log.read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)

        with worker_process(kintsugi, log):
            finished = [await kintsugi.wait_status(job["id"], "succeeded", "failed", timeout_s=60) for job in jobs]

        assert [job["status"] for job in finished] == ["succeeded"] * JOBS, log.read_text()
        # Each job's first call died with the worker and was made again by the second one.
        assert kintsugi.upstream.calls(slow) >= 2 * JOBS
        for job in finished:
            assert len(await kintsugi.cost_rows(job["id"])) == 1
