"""A job's trace: the span tree of its workflow history, plus the costs the database logged for it.

`build_trace` is pure (history JSON in, `Trace` out) so it is tested on recorded histories; the caller reads
the history and the cost rows and calls `attach_costs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.traces.history import event_times
from domain.traces.spans import SpanBuilder
from schemas.contracts import call_seq_of_cost_key
from schemas.traces import BilledCall, Span, Trace


def build_trace(job_id: str, history: dict[str, Any]) -> Trace:
    """The trace of one job from `{"events": [...]}`; a history without a start event raises ValueError."""
    builder = SpanBuilder()
    events = history.get("events") or []
    for event, at in zip(events, event_times(events), strict=True):
        builder.add(event, at)
    if builder.root is None:
        raise ValueError(f"history of {job_id} has no WorkflowExecutionStarted event")
    _order(builder.root)
    return Trace(job_id=job_id, status=builder.job_status, root=builder.root)


def _order(span: Span) -> None:
    # Local activities are recorded when their workflow task completes, after commands issued earlier.
    span.children.sort(key=lambda child: child.start_time)
    for child in span.children:
        _order(child)


def walk(span: Span) -> list[Span]:
    """The span and all its descendants, depth first, in order."""
    return [span, *(s for child in span.children for s in walk(child))]


def attach_costs(trace: Trace, rows: Sequence[BilledCall]) -> Trace:
    """Put each billed call's cost and tokens on its call_model span, and their sum on the trace.

    A row's idempotency key names its call sequence; the last activity of that call sequence is the one
    that succeeded and was billed.
    """
    calls = {span.attributes.get("call_seq"): span for span in walk(trace.root) if span.name == "call_model"}
    for row in rows:
        span = calls.get(call_seq_of_cost_key(row.idempotency_key))
        if span is not None:
            span.attributes.update(
                cost_usd=row.cost_usd, input_tokens=row.input_tokens, output_tokens=row.output_tokens
            )
    # An unpriced call (cost None) is counted apart, never as free; a cache hit's row costs 0.
    trace.cost_usd = sum(row.cost_usd for row in rows if row.cost_usd is not None)
    trace.unpriced_calls = sum(1 for row in rows if row.cost_usd is None)
    trace.saved_usd = sum(row.saved_usd for row in rows if row.saved_usd is not None)
    return trace
