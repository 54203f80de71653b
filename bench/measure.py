"""Measuring one target: a probe request, then timed phases with the CPU each metered process spent, and one
workflow history per system."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psutil

from bench.load import LoadResult, run_phase
from bench.systems import HarnessError, Target
from ops.processes import Child

METERS = ("server", "worker", "api", "upstream")
"""The processes whose CPU a phase records, in table order."""


@dataclass
class Phase:
    system: str
    latency_ms: int
    concurrency: int
    result: LoadResult
    warmup_errors: list[str]
    cpu_s: dict[str, float]

    @property
    def p50(self) -> float | None:
        return self.result.percentile(50)

    def cpu_per_1k(self, meter: str) -> float | None:
        if meter not in self.cpu_s or self.result.ok == 0:
            return None
        return self.cpu_s[meter] / self.result.ok * 1000


def cpu_seconds(child: Child) -> float:
    """User + system CPU of the process and its live descendants since they started."""
    try:
        root = psutil.Process(child.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in tree:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def probe(target: Target, timeout_s: float = 90.0) -> None:
    """One request end to end (the worker is polling, the route works) before any phase."""
    deadline = time.monotonic() + timeout_s
    last: list[str] = []
    while time.monotonic() < deadline:
        for child in target.meters.values():
            child.check()
        _, result = asyncio.run(
            run_phase(target.url, target.body, target.headers, n=1, concurrency=1, warmup=0, settle_s=0)
        )
        if result.ok:
            return
        last = result.errors
        time.sleep(0.5)
    raise HarnessError(f"{target.system} at {target.url} never answered a request: {last[:1]}")


def measure(target: Target, latency_ms: int, concurrency: int, n: int, warmup: int) -> Phase:
    """Warm up, then `n` requests at `concurrency`, with each meter's CPU taken just before and after them."""
    before: dict[str, float] = {}
    after: dict[str, float] = {}

    def snapshot(into: dict[str, float]) -> None:
        for name, child in target.meters.items():
            into[name] = cpu_seconds(child)

    warm, result = asyncio.run(
        run_phase(
            target.url,
            target.body,
            target.headers,
            n=n,
            concurrency=concurrency,
            warmup=warmup,
            id_header=target.id_header,
            on_start=lambda: snapshot(before),
            on_stop=lambda: snapshot(after),
        )
    )
    for child in target.meters.values():
        child.check()
    cpu = {name: after[name] - before[name] for name in before}
    return Phase(target.system, latency_ms, concurrency, result, warm.errors, cpu)


async def _history(address: str, workflow_id: str) -> dict[str, Any]:
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client

    client = await Client.connect(address)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    counts = Counter(EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") for event in history.events)
    size = sum(event.ByteSize() for event in history.events)
    return {"workflow_id": workflow_id, "events": len(history.events), "bytes": size, "by_type": dict(counts)}


def history_of(system: str, address: str, phases: list[Phase]) -> dict[str, Any] | None:
    """The event counts of one of `system`'s workflows (the middle one measured), or None without ids."""
    ids = [i for p in phases if p.system == system for i in p.result.ids]
    if not ids:
        return None
    return asyncio.run(_history(address, ids[len(ids) // 2]))
