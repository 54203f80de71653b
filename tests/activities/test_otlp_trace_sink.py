"""The OTLP job-trace sink against a local OTLP receiver: a real job runs through Kintsugi (dev server, API
and worker, the fake upstream; SQLite and PostgreSQL), its terminal outbox event is delivered, and the
receiver decodes what arrives as a collector would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from activities.exports.otlp_traces import CollectorRejected, OtlpTraceConfig, OtlpTraceSink
from client.job_traces import load_trace
from domain.traces.build import walk
from domain.traces.otlp import span_id_of, trace_id_of
from schemas.exports import TERMINAL_JOB_EVENTS, OutboxEvent
from store.queries import DEFAULT_TENANT_ID
from tests.support.harness import Harness
from tests.support.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _sink(kintsugi: Harness, http: httpx.AsyncClient, environ: dict[str, str]) -> OtlpTraceSink:
    config = OtlpTraceConfig.from_env(environ)
    assert config is not None
    return OtlpTraceSink(config, temporal=kintsugi.temporal, sessions=kintsugi.app.state.sessions, http=http)


async def _rerouted_job(kintsugi: Harness) -> tuple[dict[str, Any], list[OutboxEvent]]:
    """A job whose first deployment fails every attempt and whose second answers."""
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=503)
    job: dict[str, Any] = (
        await kintsugi.submit({"model": "fallback", "messages": [{"role": "user", "content": "hi"}]}, wait=20)
    ).json()
    assert job["status"] == "succeeded", job
    rows = [row for row in await kintsugi.events(job["id"]) if row.type in TERMINAL_JOB_EVENTS]
    return job, [OutboxEvent.model_validate(row, from_attributes=True) for row in rows]


async def test_a_finished_jobs_trace_arrives_span_for_span_with_its_tree_intact(
    kintsugi_db: Harness, receiver: OtlpReceiver, http: httpx.AsyncClient
) -> None:
    kintsugi = kintsugi_db
    job, events = await _rerouted_job(kintsugi)
    sink = _sink(kintsugi, http, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})

    await sink.deliver(events)

    trace = await load_trace(kintsugi.temporal, kintsugi.app.state.sessions, DEFAULT_TENANT_ID, job["id"])
    spans = receiver.spans()
    assert len(spans) == len(walk(trace.root))
    assert {span.span_id for span in spans} == {span_id_of(job["id"], span.span_id) for span in walk(trace.root)}
    assert {span.trace_id for span in spans} == {trace_id_of(job["id"])}
    ids = {span.span_id for span in spans}
    [root] = [span for span in spans if span.parent_span_id == ""]
    assert all(span.parent_span_id in ids for span in spans if span is not root)
    names = {span.name for span in spans}
    assert {f"call up/{kintsugi.model('a')}", f"call up/{kintsugi.model('b')}", "preflight"} <= names
    assert any(name.startswith("reroute ") for name in names)
    assert {span.path for span in spans} == {"/v1/traces"}
    assert {span.content_type for span in spans} == {"application/x-protobuf"}
    assert root.resource["service.name"] == "kintsugi"


async def test_json_headers_and_the_traces_endpoint_come_from_the_otel_variables(
    kintsugi: Harness, receiver: OtlpReceiver, http: httpx.AsyncClient
) -> None:
    job, events = await _rerouted_job(kintsugi)
    sink = _sink(
        kintsugi,
        http,
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/custom/traces",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # the traces-specific endpoint wins
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cret,x-team=ops",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            "OTEL_SERVICE_NAME": "kintsugi-prod",
        },
    )

    await sink.deliver(events)

    [span, *_] = receiver.spans()
    assert span.path == "/custom/traces"
    assert span.content_type == "application/json"
    assert (span.headers["x-api-key"], span.headers["x-team"]) == ("s3cret", "ops")
    assert span.resource["service.name"] == "kintsugi-prod"
    assert span.trace_id == trace_id_of(job["id"])


async def test_a_collector_that_refuses_makes_delivery_raise(
    kintsugi: Harness, receiver: OtlpReceiver, http: httpx.AsyncClient
) -> None:
    _, events = await _rerouted_job(kintsugi)
    sink = _sink(kintsugi, http, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
    receiver.fail(500)

    with pytest.raises(CollectorRejected):
        await sink.deliver(events)

    receiver.recover()
    await sink.deliver(events)
    assert receiver.spans()


async def test_a_job_temporal_no_longer_has_is_skipped_not_retried(
    kintsugi: Harness, receiver: OtlpReceiver, http: httpx.AsyncClient
) -> None:
    _, [event] = await _rerouted_job(kintsugi)
    sink = _sink(kintsugi, http, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})

    await sink.deliver([event.model_copy(update={"job_id": "job_gone_past_retention"})])

    assert receiver.requests == 0


def test_without_an_endpoint_there_is_no_sink_and_grpc_is_refused() -> None:
    assert OtlpTraceConfig.from_env({}) is None
    assert OtlpTraceConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == OtlpTraceConfig(
        endpoint="http://c:4318/v1/traces"
    )
    with pytest.raises(ValueError, match="OTLP/HTTP"):
        OtlpTraceConfig.from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        )
