"""Prometheus metrics of a Kintsugi process (prometheus-client's default registry).

The API serves them at `/metrics`; `kintsugi worker` on `KINTSUGI_WORKER_METRICS_PORT`. A metric is defined
here once and recorded where the fact happens (the row written, the request answered).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("kintsugi.metrics")

EXPORT_LAG_SECONDS = Gauge(
    "kintsugi_export_lag_seconds",
    "Age of the oldest outbox event a sink has not yet accepted (0: nothing waiting)",
    ["sink"],
)
EXPORTED_EVENTS = Counter(
    "kintsugi_exported_events",
    "Outbox events a sink accepted",
    ["sink"],
)

# The API's: requests, admission. Labels are bounded: route templates, the routes file's aliases, refusal codes.
HTTP_REQUESTS = Counter(
    "kintsugi_http_requests",
    "HTTP requests answered, by method, route template (`unmatched` for no route) and status",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "kintsugi_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response (a stream: to its last byte)",
    ["method", "route"],
)
JOBS_SUBMITTED = Counter(
    "kintsugi_jobs_submitted",
    "Jobs that reached admission, by route (model alias) and outcome (`accepted` or the refusal's error code)",
    ["route", "outcome"],
)
RATE_LIMIT_REFUSALS = Counter(
    "kintsugi_rate_limit_refusals",
    "Requests refused by a rate limit, by limit (rpm, tpm) and scope (key, tenant)",
    ["limit", "scope"],
)

# The worker's, counted only for rows newly written (`WrittenFacts`), so they equal what the database holds.
JOBS_FINISHED = Counter(
    "kintsugi_jobs_finished",
    "Jobs that ended, by route and status (succeeded, failed, cancelled; a cache hit is a success)",
    ["route", "status"],
)
JOBS_PARKED = Counter("kintsugi_jobs_parked", "Jobs parked after their retries and reroutes ran out", ["route"])
REROUTES = Counter("kintsugi_reroutes", "Moves of a job to the next deployment of its route", ["route"])
CACHE_HITS = Counter("kintsugi_cache_hits", "Jobs answered from the response cache", ["route"])
GUARDRAIL_REFUSALS = Counter(
    "kintsugi_guardrail_refusals",
    "Inputs blocked and answers failed by a guardrail, by guardrail and stage",
    ["guardrail", "stage"],
)
COST_USD = Counter(
    "kintsugi_cost_usd",
    "Spend of priced calls in USD (the sum of `model_cost_logs.cost_usd`), by deployment",
    ["provider", "model"],
)
TOKENS = Counter(
    "kintsugi_tokens",
    "Tokens of calls recorded in `model_cost_logs`, by deployment and direction (input, output)",
    ["provider", "model", "direction"],
)
UPSTREAM_SECONDS = Histogram(
    "kintsugi_upstream_duration_seconds",
    "Time of one upstream call attempt, by deployment and outcome (ok, error)",
    ["provider", "model", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
UPSTREAM_RETRIES = Counter(
    "kintsugi_upstream_retries",
    "Upstream call attempts after a deployment's first (Temporal's retries)",
    ["provider", "model"],
)

_TERMINAL_STATUS = {
    "job.succeeded": "succeeded",
    "job.cache_hit": "succeeded",
    "job.failed": "failed",
    "job.cancelled": "cancelled",
}
_REFUSING_ACTIONS = frozenset({"block", "fail"})
COUNTED_EVENTS = frozenset({*_TERMINAL_STATUS, "job.parked", "job.rerouted", "guardrail.triggered"})
"""The event types a counter follows; a batch without any needs no route (`WrittenFacts.add_events`)."""


@dataclass(frozen=True)
class _Cost:
    provider: str
    model: str
    cost_usd: float | None
    input_tokens: int
    output_tokens: int


@dataclass
class WrittenFacts:
    """What one transaction wrote, counted once it commits (`count`).

    Counted at the write, a transaction that then rolled back would count twice: its activity is retried and
    writes the same rows again. A row that was already there (a retried activity, a replayed task) is never
    added, so the counters equal the database.
    """

    _events: list[tuple[str, str, Mapping[str, Any]]] = field(default_factory=list)
    _costs: list[_Cost] = field(default_factory=list)

    def add_events(self, route: str, events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Events newly written (type, payload) of a job on `route`."""
        self._events.extend((route, type_, data) for type_, data in events if type_ in COUNTED_EVENTS)

    def add_cost(
        self, *, provider: str, model: str, cost_usd: float | None, input_tokens: int, output_tokens: int
    ) -> None:
        """A `model_cost_logs` row newly written (`cost_usd` None: unpriced, adds tokens only)."""
        self._costs.append(_Cost(provider, model, cost_usd, input_tokens, output_tokens))

    def count(self) -> None:
        for route, type_, data in self._events:
            if (status := _TERMINAL_STATUS.get(type_)) is not None:
                JOBS_FINISHED.labels(route, status).inc()
                if type_ == "job.cache_hit":
                    CACHE_HITS.labels(route).inc()
            elif type_ == "job.parked":
                JOBS_PARKED.labels(route).inc()
            elif type_ == "job.rerouted":
                REROUTES.labels(route).inc()
            elif type_ == "guardrail.triggered" and data.get("action") in _REFUSING_ACTIONS:
                GUARDRAIL_REFUSALS.labels(str(data.get("guardrail", "")), str(data.get("stage", ""))).inc()
        for cost in self._costs:
            if cost.cost_usd:
                COST_USD.labels(cost.provider, cost.model).inc(cost.cost_usd)
            if cost.input_tokens:
                TOKENS.labels(cost.provider, cost.model, "input").inc(cost.input_tokens)
            if cost.output_tokens:
                TOKENS.labels(cost.provider, cost.model, "output").inc(cost.output_tokens)
        self._events.clear()
        self._costs.clear()


def serve_metrics(port: int) -> Callable[[], None] | None:
    """Serve the registry over HTTP on `port` (all interfaces, for a Prometheus elsewhere) in a daemon thread;
    returns what stops it. None: `port` is 0 (off), or taken — logged, and the worker runs its jobs anyway
    (a second worker on one machine needs a port of its own to be scraped, not to work)."""
    if port == 0:
        return None
    try:
        server, thread = start_http_server(port)
    except OSError as err:
        log.error("metrics not served: port %d: %s", port, err)
        return None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop
