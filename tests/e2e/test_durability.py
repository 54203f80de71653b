"""A worker killed with SIGKILL mid-flight loses no job and bills none twice."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.support.harness import KintsugiFactory

JOBS = 8


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
        with kintsugi.worker_process(log) as first:
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

        with kintsugi.worker_process(log):
            finished = [await kintsugi.wait_status(job["id"], "succeeded", "failed", timeout_s=60) for job in jobs]

        assert [job["status"] for job in finished] == ["succeeded"] * JOBS, log.read_text()
        # Each job's first call died with the worker and was made again by the second one.
        assert kintsugi.upstream.calls(slow) >= 2 * JOBS
        for job in finished:
            assert len(await kintsugi.cost_rows(job["id"])) == 1
