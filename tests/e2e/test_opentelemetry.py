"""OpenTelemetry end to end (dev server, the API with its own worker, the fake upstream): one request's spans form
one trace from the HTTP server span through the workflow and its activities to the upstream call, and the upstream
sees that trace in its `traceparent`. Without `OTEL_*` nothing is instrumented at all.

Spans go to an in-memory exporter through a provider the test installs for the process (`use_tracer_provider`) and
takes away after, so no other test is traced; the global provider is never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import ops.telemetry
from api.app import create_app
from client.connect import connect
from ops.telemetry import ENDPOINT_VARS, start_tracing, temporal_interceptors, tracing_configured, use_tracer_provider
from settings import Settings
from tests.support.harness import KintsugiFactory
from worker import upstream_http

QUESTION = [{"role": "user", "content": "Which planet is the largest? One word."}]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with use_tracer_provider(provider):
        yield exporter
    provider.shutdown()


async def test_one_trace_from_the_request_to_the_upstream(
    make_kintsugi: KintsugiFactory, sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    # No worker but the API's own: the job started eagerly runs on the API's (traced) client and upstream client.
    async with make_kintsugi(sqlite_url, run_worker=False) as kintsugi:
        model = kintsugi.model("a")
        kintsugi.upstream.configure(model)
        response = await kintsugi.submit({"model": "local-fallback", "messages": QUESTION}, wait=20)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded"
        seen = kintsugi.upstream.last_request(model)["headers"]
        finished = await _spans_once(spans, "RunWorkflow:LLMJobWorkflow")

    [server] = [s for s in finished if s.kind == SpanKind.SERVER and s.name == "POST /v1/jobs"]
    [upstream] = [s for s in finished if s.kind == SpanKind.CLIENT and s.name == "POST"]
    trace_id = _context(server).trace_id
    by_id = {_context(s).span_id: s for s in finished}
    chain = []
    span: ReadableSpan | None = upstream
    while span is not None:
        assert _context(span).trace_id == trace_id
        chain.append(span.name)
        span = by_id.get(span.parent.span_id) if span.parent is not None else None
    # From the upstream call up to the request: every hop of the job, one trace. (Temporal's interceptor parents
    # a workflow's spans on the start's context, so RunWorkflow is StartActivity's sibling, not its parent.)
    assert chain == ["POST", "RunActivity:call_model", "StartActivity:call_model", "StartWorkflow:LLMJobWorkflow",
                     "POST /v1/jobs"]  # fmt: skip
    parents = {
        s.name: by_id[s.parent.span_id].name for s in finished if s.parent is not None and s.parent.span_id in by_id
    }
    assert parents["RunWorkflow:LLMJobWorkflow"] == "StartWorkflow:LLMJobWorkflow"
    assert parents["RunActivity:preflight"] == "StartActivity:preflight"
    assert parents["RunActivity:postflight"] == "StartActivity:postflight"
    assert {_context(s).trace_id for s in finished} == {trace_id}
    version, seen_trace, seen_parent, _ = seen["traceparent"].split("-")
    assert (version, int(seen_trace, 16), int(seen_parent, 16)) == ("00", trace_id, _context(upstream).span_id)


async def test_nothing_is_instrumented_without_otel_env(monkeypatch: pytest.MonkeyPatch, temporal_address: str) -> None:
    for var in ENDPOINT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(ops.telemetry._Process, "started", False)  # as in a fresh process
    monkeypatch.setattr(ops.telemetry._Process, "provider", None)
    assert not tracing_configured()

    app = create_app(Settings(env="test", admin_api_key="unused"))
    assert start_tracing("kintsugi-worker") is None
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert temporal_interceptors() == []
    client = await connect(Settings(env="test", admin_api_key="unused", temporal_address=temporal_address))
    assert list(client.config()["interceptors"]) == []
    async with upstream_http() as http:
        assert not getattr(http, "_is_instrumented_by_opentelemetry", False)


def test_the_endpoint_turns_tracing_on_with_a_provider_of_the_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kintsugi-test")
    monkeypatch.setattr(ops.telemetry._Process, "started", False)
    monkeypatch.setattr(ops.telemetry._Process, "provider", None)
    global_before = trace.get_tracer_provider()

    provider = start_tracing("kintsugi-api")
    try:
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "kintsugi-test"
        assert start_tracing("kintsugi-worker") is provider  # one per process: the first caller's
        assert trace.get_tracer_provider() is global_before  # Langfuse's and the exporters' stay untraced
        assert len(temporal_interceptors()) == 1
    finally:
        if provider is not None:
            provider.shutdown()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing_configured()


async def _spans_once(exporter: InMemorySpanExporter, name: str) -> tuple[ReadableSpan, ...]:
    """The finished spans once one named `name` is among them (a workflow's span ends as its run completes,
    which may be just after the caller got the answer)."""
    for _ in range(200):
        finished = exporter.get_finished_spans()
        if any(span.name == name for span in finished):
            return finished
        await asyncio.sleep(0.02)
    raise AssertionError(f"no span {name!r} among {[s.name for s in exporter.get_finished_spans()]}")


def _context(span: ReadableSpan) -> trace.SpanContext:
    context = span.get_span_context()
    assert context is not None
    return context
