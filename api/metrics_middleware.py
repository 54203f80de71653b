"""Count every HTTP request and time it, by the route template it matched (`kintsugi_http_requests`)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ops.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

UNMATCHED = "unmatched"
"""The route label of a request no route matched (a 404 of an unknown path, a body refused before routing): the
path itself would let any caller mint label values."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Any other method a client sends is labelled `other`, for the same reason."""


class MetricsMiddleware:
    """Pure ASGI, on every request's path: a few µs a request (see the README's figure). The route template
    comes from the route the router matched (`scope["route"]`, set in the request's own scope), so
    `/v1/jobs/{job_id}` is one series, not one per job."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        """The labelled children by (method, route, status): `.labels()` takes a lock and builds a key each call,
        half of what this middleware cost. Bounded like the labels themselves."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it responds

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - started
            template = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in _METHODS else "other"
            key = (method, template, status)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _series(*key)
            series[0].inc()
            series[1].observe(elapsed)


def _series(method: str, template: str, status: int) -> tuple[Counter, Histogram]:
    return HTTP_REQUESTS.labels(method, template, str(status)), HTTP_REQUEST_SECONDS.labels(method, template)
