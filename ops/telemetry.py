"""OpenTelemetry tracing of a Kintsugi process: the HTTP request, the workflow and its activities, the upstream call.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; then spans go over
OTLP/HTTP, configured by the standard `OTEL_*` variables (headers, sampler, batch sizes, resource attributes).
Off costs nothing: no interceptor on the Temporal client, no middleware, no wrapped transport, and none of the
OpenTelemetry SDK is imported.

The provider is the process's own and is never made the global one: the Langfuse exporter and the job-trace
exporter run their own providers and HTTP clients, and a global provider would have the instrumentations trace
those exports too. Everything here is handed the provider explicitly instead (the instrumentations and
`TracingInterceptor` take it as an argument); context still propagates through OpenTelemetry's global
propagator (W3C `traceparent`), which is what the upstream sees.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
UNTRACED_PATHS = "/metrics,/healthz,/readyz"
"""Probes and scrapes: a span each every few seconds would drown the requests worth reading."""


class _Process:
    """The process's tracer provider: one per process, like the Temporal runtime it traces."""

    provider: TracerProvider | None = None
    started = False


def tracing_configured() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(var) for var in ENDPOINT_VARS)


def start_tracing(default_service_name: str) -> TracerProvider | None:
    """The process's provider, built from the environment on the first call (None: tracing is off).

    Args:
        default_service_name: `service.name` when `OTEL_SERVICE_NAME` is unset: `kintsugi-api` or
            `kintsugi-worker`. The first caller names the process; an API process's own worker shares its name.
    """
    if not _Process.started:
        _Process.started = True
        if tracing_configured():
            _Process.provider = _provider_from_env(default_service_name)
    return _Process.provider


def tracer_provider() -> TracerProvider | None:
    """The provider `start_tracing` built, if any: what the Temporal client and the upstream client use."""
    return _Process.provider


@contextlib.contextmanager
def use_tracer_provider(provider: TracerProvider | None) -> Iterator[None]:
    """Make `provider` the process's for a while (tests: an in-memory exporter), then restore what was there."""
    saved = (_Process.provider, _Process.started)
    _Process.provider, _Process.started = provider, True
    try:
        yield
    finally:
        _Process.provider, _Process.started = saved


def _provider_from_env(default_service_name: str) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES; attributes given here win, so the name is chosen here.
    service = os.environ.get("OTEL_SERVICE_NAME") or default_service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))  # sampler: OTEL_TRACES_SAMPLER
    # The exporter reads its endpoint (+ /v1/traces), headers and timeout from OTEL_EXPORTER_OTLP_*; the batch
    # processor its queue and delay from OTEL_BSP_*. The provider flushes at exit (shutdown_on_exit).
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def instrument_app(app: FastAPI, provider: TracerProvider | None) -> None:
    """A server span per request, its context current while the route runs (so the workflow start joins it)."""
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=UNTRACED_PATHS)


def instrument_upstream(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client span per upstream request, and its `traceparent` on the request. Only this client: a global
    patch of httpx would trace the exporters' own requests as well."""
    provider = tracer_provider()
    if provider is not None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
    return client


def temporal_interceptors() -> list[Interceptor]:
    """`TracingInterceptor` when tracing is on: on the client it spans workflow starts and carries the context in
    their headers; workers built on that client take it up and span workflow runs and activities."""
    provider = tracer_provider()
    if provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(provider.get_tracer("kintsugi.temporal"))]
