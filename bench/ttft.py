"""Time to first token: streamed answers whose upstream spaces its chunks, timed at the client.

The upstream sends `STREAM_CHUNKS` pieces `STREAM_CHUNK_DELAY_MS` apart; a gateway that relays tokens shows
its first one about when the upstream sends it, one that buffers shows it with the last.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

STREAM_MODEL = "bench-stream"
STREAM_CHUNKS = 5
STREAM_CHUNK_DELAY_MS = 300


@dataclass
class TtftResult:
    system: str
    first_token_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def percentile(self, values: list[float], p: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def row(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "n": len(self.first_token_ms),
            "errors": len(self.errors),
            "error_samples": sorted(set(self.errors))[:3],
            "ttft_p50_ms": self.percentile(self.first_token_ms, 50),
            "ttft_p95_ms": self.percentile(self.first_token_ms, 95),
            "total_p50_ms": self.percentile(self.total_ms, 50),
        }


def configure_upstream(upstream_url: str) -> None:
    """Make the upstream answer `STREAM_MODEL` in spaced chunks (it is steered over HTTP)."""
    behavior = {"model": STREAM_MODEL, "chunks": STREAM_CHUNKS, "chunk_delay_ms": STREAM_CHUNK_DELAY_MS}
    httpx.post(f"{upstream_url}/_fake/configure", json=behavior, timeout=10).raise_for_status()


async def _one(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], into: TtftResult):
    started = time.perf_counter()
    first: float | None = None
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                into.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                return
            async for line in response.aiter_lines():
                if first is None and line.startswith("data:") and _has_content(line):
                    first = time.perf_counter()
    except httpx.HTTPError as err:
        into.errors.append(f"{type(err).__name__}: {err}"[:200])
        return
    if first is None:
        into.errors.append("no content in the stream")
        return
    into.first_token_ms.append((first - started) * 1000)
    into.total_ms.append((time.perf_counter() - started) * 1000)


def _has_content(line: str) -> bool:
    data = line.removeprefix("data:").strip()
    if data == "[DONE]":
        return False
    chunk = json.loads(data)
    return any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or [])


def measure_ttft(system: str, url: str, model: str, headers: dict[str, str], *, n: int) -> TtftResult:
    """`n` streamed requests one after another (concurrency 1: latency, not load)."""
    body = {"model": model, "messages": [{"role": "user", "content": "stream"}], "stream": True}
    result = TtftResult(system)

    async def run() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            await _one(client, url, body, headers, TtftResult(system))  # warm-up, not counted
            for _ in range(n):
                await _one(client, url, body, headers, result)

    asyncio.run(run())
    return result


def table(results: list[TtftResult]) -> str:
    lines = [
        f"Time to first token, stream: true, upstream chunks {STREAM_CHUNK_DELAY_MS} ms apart "
        f"({STREAM_CHUNKS} chunks), concurrency 1:",
        f"{'system':<17} {'n':>4} {'err':>4} {'TTFT p50':>9} {'TTFT p95':>9} {'total p50':>10}",
    ]
    for result in results:
        row = result.row()
        lines.append(
            f"{row['system']:<17} {row['n']:>4} {row['errors']:>4} {_ms(row['ttft_p50_ms'])} "
            f"{_ms(row['ttft_p95_ms'])} {_ms(row['total_p50_ms'], 10)}"
        )
    return "\n".join(lines)


def _ms(value: float | None, width: int = 9) -> str:
    return f"{value:.1f}".rjust(width) if value is not None else "-".rjust(width)
