"""OTLP export of a job's trace: what a collector decodes from `trace_to_otlp`'s JSON.

A collector reads OTLP/JSON with hex trace and span ids (the OTLP spec), where protobuf's own JSON mapping
wants base64 for bytes; `decode` turns the ids to base64 as the collector's reader does, then lets
`opentelemetry-proto` parse the rest strictly (an unknown field or a wrong type fails the test).
"""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from domain.traces.build import build_trace, walk
from domain.traces.otlp import span_id_of, trace_id_of, trace_to_otlp
from schemas.traces import Span, SpanEvent, Trace
from tests.domain.test_traces import EVERY_HISTORY
from tests.support.common import HISTORIES

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def decode(body: dict[str, Any]) -> ExportTraceServiceRequest:
    body = copy.deepcopy(body)
    for resource in body["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64encode(bytes.fromhex(span[field])).decode()
    return ParseDict(body, ExportTraceServiceRequest())


def attrs(values: Any) -> dict[str, Any]:
    def plain(value: AnyValue) -> Any:
        return getattr(value, str(value.WhichOneof("value")))

    return {kv.key: plain(kv.value) for kv in values if isinstance(kv, KeyValue)}


def spans_of(request: ExportTraceServiceRequest) -> list[OtlpSpan]:
    [resource] = request.resource_spans
    [scope] = resource.scope_spans
    return list(scope.spans)


def trace_of(path: Path) -> Trace:
    return build_trace(f"job_{path.stem}", json.loads(path.read_text()))


@pytest.mark.parametrize("path", EVERY_HISTORY, ids=lambda path: str(path.relative_to(HISTORIES).with_suffix("")))
def test_a_collector_decodes_one_span_per_span_of_the_tree(path: Path) -> None:
    trace = trace_of(path)

    spans = spans_of(decode(trace_to_otlp(trace)))

    tree = walk(trace.root)
    assert [s.name for s in spans] == [s.name for s in tree]
    assert {s.trace_id for s in spans} == {bytes.fromhex(trace_id_of(trace.job_id))}
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(tree)
    for ours, theirs in zip(tree, spans, strict=True):
        assert theirs.span_id == bytes.fromhex(span_id_of(trace.job_id, ours.span_id))
        if ours.parent_id is None:
            assert theirs.parent_span_id == b""
        else:
            assert by_id[theirs.parent_span_id].name == next(s.name for s in tree if s.span_id == ours.parent_id)
        assert theirs.start_time_unix_nano <= theirs.end_time_unix_nano


def test_resource_names_the_service_job_and_tenant() -> None:
    trace = trace_of(HISTORIES / "success.json").model_copy(update={"tenant_id": "tenant_a"})

    [resource] = decode(trace_to_otlp(trace, service_name="kintsugi-prod")).resource_spans

    assert attrs(resource.resource.attributes) == {
        "service.name": "kintsugi-prod",
        "kintsugi.job_id": "job_success",
        "kintsugi.tenant_id": "tenant_a",
    }


def test_ids_are_stable_across_exports_and_differ_between_jobs() -> None:
    trace = trace_of(HISTORIES / "retry.json")
    other = trace.model_copy(update={"job_id": "job_other"})

    first, again = trace_to_otlp(trace), trace_to_otlp(trace_of(HISTORIES / "retry.json"))
    elsewhere = trace_to_otlp(other)

    assert first == again
    ids = [s["spanId"] for s in first["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    other_ids = [s["spanId"] for s in elsewhere["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert len(trace_id_of("job_retry")) == 32 and len(ids[0]) == 16
    assert not set(ids) & set(other_ids)


def hand_made_trace() -> Trace:
    call = Span(
        span_id="5",
        parent_id="1",
        name="call openai/gpt-4o",
        kind="activity",
        start_time=T0 + timedelta(seconds=1),
        end_time=None,
        status="running",
        attributes={
            "activity_type": "call_model",
            "provider": "openai",
            "model": "gpt-4o",
            "attempts": 3,
            "cost_usd": 0.25,
            "last_failure": {"message": "upstream 503", "type": "UpstreamUnavailable"},
            "streamed": False,
        },
        events=[
            SpanEvent(name="attempt 1 failed", time=T0 + timedelta(seconds=2), attributes={"attempt": 1}),
        ],
    )
    failed = Span(
        span_id="3",
        parent_id="1",
        name="preflight",
        kind="local_activity",
        start_time=T0,
        end_time=T0 + timedelta(milliseconds=1),
        status="error",
        attributes={"last_failure": {"message": "policy refused", "type": "PolicyRefused"}},
    )
    root = Span(
        span_id="1",
        parent_id=None,
        name="LLMJobWorkflow",
        kind="workflow",
        start_time=T0,
        end_time=None,
        status="running",
        children=[failed, call],
    )
    return Trace(job_id="job_hand", tenant_id="t1", status="running", root=root)


def test_an_open_span_ends_when_the_trace_was_read_and_says_it_is_open() -> None:
    now = T0 + timedelta(seconds=30)

    root, preflight, call = spans_of(decode(trace_to_otlp(hand_made_trace(), now=now)))

    now_nanos = int(now.timestamp()) * 1_000_000_000
    assert root.end_time_unix_nano == now_nanos and call.end_time_unix_nano == now_nanos
    assert attrs(call.attributes)["kintsugi.open"] is True
    assert "kintsugi.open" not in attrs(preflight.attributes)
    assert call.status.code == Status.STATUS_CODE_UNSET


def test_an_open_span_without_now_ends_at_the_latest_time_the_trace_records() -> None:
    root, _, call = spans_of(decode(trace_to_otlp(hand_made_trace())))

    assert call.end_time_unix_nano == root.end_time_unix_nano == int((T0 + timedelta(seconds=2)).timestamp() * 1e9)


def test_attributes_events_and_status_keep_their_types() -> None:
    _, preflight, call = spans_of(decode(trace_to_otlp(hand_made_trace())))

    found = attrs(call.attributes)
    assert found["gen_ai.system"] == "openai" and found["gen_ai.request.model"] == "gpt-4o"
    assert found["kintsugi.attempts"] == 3 and found["kintsugi.cost_usd"] == 0.25
    assert found["kintsugi.streamed"] is False
    assert json.loads(found["kintsugi.last_failure"]) == {"message": "upstream 503", "type": "UpstreamUnavailable"}
    assert found["kintsugi.span_kind"] == "activity"
    assert call.kind == OtlpSpan.SPAN_KIND_CLIENT and preflight.kind == OtlpSpan.SPAN_KIND_INTERNAL
    [event] = call.events
    assert event.name == "attempt 1 failed" and attrs(event.attributes) == {"attempt": 1}
    assert event.time_unix_nano == int((T0 + timedelta(seconds=2)).timestamp()) * 1_000_000_000
    assert preflight.status.code == Status.STATUS_CODE_ERROR and preflight.status.message == "policy refused"
