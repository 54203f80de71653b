"""A local stand-in for every exporter's endpoint (RudderStack, Langfuse, an OTLP collector) for the bench's
`kintsugi-exports` system: it accepts any POST with 200 and counts requests and bytes by path.

    python -m bench.sinks --port 9200     # GET /counts -> {"/v1/batch": {"requests": n, "bytes": b}, ...}

It runs as a process of its own so its CPU is metered apart from Kintsugi's.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def build_app() -> Starlette:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "bytes": 0})

    async def accept(request: Request) -> Response:
        body = await request.body()
        seen = counts[request.url.path]
        seen["requests"] += 1
        seen["bytes"] += len(body)
        # An empty JSON object is a valid answer for RudderStack, Langfuse's OTLP route and an OTLP collector.
        return JSONResponse({})

    async def read_counts(request: Request) -> Response:
        return JSONResponse(counts)

    return Starlette(
        routes=[Route("/counts", read_counts, methods=["GET"]), Route("/{path:path}", accept, methods=["POST"])]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
