"""A job's trace as OTLP/JSON: the body of an `ExportTraceServiceRequest` an OpenTelemetry collector accepts
on `POST /v1/traces`.

The JSON follows the OTLP spec's mapping, not plain proto JSON: trace and span ids are hex, 64-bit integers
and times are strings, enums are integers. Ids are derived from the job and span ids, so exporting a trace
twice sends the same spans (a collector or backend that deduplicates sees one trace), and a job's spans land
in one trace whichever process exported them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from schemas.traces import Span, SpanEvent, Trace

SCOPE_NAME = "kintsugi.job_trace"
"""The instrumentation scope of exported job traces: tells them apart from live spans in a backend."""
_STATUS_UNSET, _STATUS_OK, _STATUS_ERROR = 0, 1, 2
_KIND_INTERNAL, _KIND_CLIENT = 1, 3
_GEN_AI_ATTRIBUTES = {
    "provider": "gen_ai.system",
    "model": "gen_ai.request.model",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
}
"""Our call attributes under the OpenTelemetry GenAI semantic-convention names, which backends display."""


def trace_to_otlp(trace: Trace, *, service_name: str = "kintsugi", now: datetime | None = None) -> dict[str, Any]:
    """The trace as one OTLP/JSON `ExportTraceServiceRequest`: one span per span of the tree.

    A span still open (a running job, a pending activity) ends at `now` — the time the trace was read —
    or, without it, at the latest time the trace records; its attribute `kintsugi.open` says so.
    """
    trace_id = trace_id_of(trace.job_id)
    open_end = now or _latest_time(trace.root)
    resource = {"service.name": service_name, "kintsugi.job_id": trace.job_id, "kintsugi.tenant_id": trace.tenant_id}
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes(resource)},
                "scopeSpans": [
                    {
                        "scope": {"name": SCOPE_NAME},
                        "spans": [_span(trace, span, trace_id, open_end) for span in _walk(trace.root)],
                    }
                ],
            }
        ]
    }


def trace_id_of(job_id: str) -> str:
    """The 32-hex-digit OTLP trace id of a job: the first 16 bytes of the job id's SHA-256."""
    return hashlib.sha256(job_id.encode()).digest()[:16].hex()


def span_id_of(job_id: str, span_id: str) -> str:
    """The 16-hex-digit OTLP span id of one span of a job's trace (span ids are unique within a job only)."""
    return hashlib.sha256(f"{job_id}/{span_id}".encode()).digest()[:8].hex()


def _walk(span: Span) -> Iterator[Span]:
    yield span
    for child in span.children:
        yield from _walk(child)


def _latest_time(root: Span) -> datetime:
    times = (t for span in _walk(root) for t in (span.start_time, span.end_time, *(e.time for e in span.events)))
    return max(t for t in times if t is not None)


def _span(trace: Trace, span: Span, trace_id: str, open_end: datetime) -> dict[str, Any]:
    end = span.end_time or max(open_end, span.start_time)
    attributes = {
        "kintsugi.span_kind": span.kind,
        "kintsugi.status": span.status,
        "kintsugi.open": span.end_time is None or None,
        **{f"kintsugi.{key}": value for key, value in span.attributes.items()},
        **{otel: span.attributes.get(ours) for ours, otel in _GEN_AI_ATTRIBUTES.items()},
    }
    encoded: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id_of(trace.job_id, span.span_id),
        "name": span.name,
        "kind": _KIND_CLIENT if span.attributes.get("activity_type") == "call_model" else _KIND_INTERNAL,
        "startTimeUnixNano": _nanos(span.start_time),
        "endTimeUnixNano": _nanos(end),
        "attributes": _attributes(attributes),
        "events": [_event(event) for event in span.events],
        "status": _status(span),
    }
    if span.parent_id is not None:
        encoded["parentSpanId"] = span_id_of(trace.job_id, span.parent_id)
    return encoded


def _event(event: SpanEvent) -> dict[str, Any]:
    return {"timeUnixNano": _nanos(event.time), "name": event.name, "attributes": _attributes(event.attributes)}


def _status(span: Span) -> dict[str, Any]:
    # OTLP has no "cancelled" or "running": both stay unset, and `kintsugi.status` tells them apart.
    if span.status == "ok":
        return {"code": _STATUS_OK}
    if span.status != "error":
        return {"code": _STATUS_UNSET}
    failure = span.attributes.get("last_failure") or span.attributes.get("failure")
    message = failure.get("message") if isinstance(failure, dict) else span.attributes.get("failure_message")
    return {"code": _STATUS_ERROR, "message": str(message or "")}


def _attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    """OTLP `KeyValue`s; a None is left out, a list or object goes as its JSON text."""
    return [{"key": key, "value": _any_value(value)} for key, value in values.items() if value is not None]


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):  # before int: a bool is an int to Python
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    return {"stringValue": json.dumps(value, default=str, sort_keys=True)}


def _nanos(at: datetime) -> str:
    """Nanoseconds since the epoch, as a string (OTLP/JSON spells 64-bit integers as strings)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return str((delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000)
