"""The load generator: one asyncio loop, one httpx client, `concurrency` closed-loop callers."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

REQUEST_TIMEOUT_S = 120.0


@dataclass
class LoadResult:
    n: int
    elapsed_s: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    """Workflow ids from `id_header` of successful answers (to fetch a history afterwards)."""

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, p: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    @property
    def jobs_per_s(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def _drive(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    n: int,
    concurrency: int,
    id_header: str | None,
) -> LoadResult:
    result = LoadResult(n=n, elapsed_s=0.0)
    remaining = n

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                response = await client.post(url, json=body, headers=headers)
            except httpx.HTTPError as err:
                result.errors.append(f"{type(err).__name__}: {err}"[:300])
                continue
            took_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                result.errors.append(f"HTTP {response.status_code}: {response.text[:300]}")
                continue
            result.latencies_ms.append(took_ms)
            if id_header and (value := response.headers.get(id_header)):
                result.ids.append(value)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(min(concurrency, n))))
    result.elapsed_s = time.perf_counter() - started
    return result


async def run_phase(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    n: int,
    concurrency: int,
    warmup: int,
    id_header: str | None = None,
    on_start: Callable[[], None] = lambda: None,
    on_stop: Callable[[], None] = lambda: None,
    settle_s: float = 0.5,
) -> tuple[LoadResult, LoadResult]:
    """Warm up (same client, so the connections are open), settle, then measure between the callbacks."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        warm = await _drive(client, url, body, headers, n=warmup, concurrency=concurrency, id_header=id_header)
        await asyncio.sleep(settle_s)
        on_start()
        measured = await _drive(client, url, body, headers, n=n, concurrency=concurrency, id_header=id_header)
        on_stop()
    return warm, measured
