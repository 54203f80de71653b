"""A job's trace: the span tree of its workflow history, plus the costs the database logged for it.

`build_trace` is pure (history JSON in, `Trace` out) so it is tested on recorded histories; the caller reads
the history, its child workflows' histories (`child_executions` says which), the activities still pending and
the cost rows, and calls `attach_costs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from domain.traces import history as h
from domain.traces.history import event_times
from domain.traces.spans import SpanBuilder
from schemas.contracts import call_seq_of_cost_key
from schemas.traces import BilledCall, PendingActivity, Span, SpanEvent, Trace

ChildHistory = Callable[[str, str], dict[str, Any] | None]
"""The history of a child workflow by its workflow and run id; None when it cannot be read (then its span
stays without children)."""
MAX_CHILD_DEPTH = 8
"""Children of children are followed this deep; a deeper one is a span without children."""


def build_trace(
    job_id: str,
    history: dict[str, Any],
    *,
    child_history: ChildHistory | None = None,
    pending: Sequence[PendingActivity] = (),
) -> Trace:
    """The trace of one job from `{"events": [...]}`; a history without a start event raises ValueError.

    `child_history` fills each child workflow's span with the spans of the child's own history, recursively;
    `pending` (the job's `describe()`) tells an open activity's attempt, next retry and last failure.
    """
    root, status = _tree(job_id, history, child_history, MAX_CHILD_DEPTH)
    _mark_pending(root, pending)
    return Trace(job_id=job_id, status=status, root=root)


def child_executions(history: dict[str, Any]) -> list[tuple[str, str]]:
    """The `(workflow_id, run_id)` of each child workflow this history started, in order."""
    found: list[tuple[str, str]] = []
    for event in history.get("events") or []:
        if h.event_type(event) == "CHILD_WORKFLOW_EXECUTION_STARTED":
            execution = h.attributes(event).get("workflowExecution") or {}
            if execution.get("workflowId") and execution.get("runId"):
                found.append((str(execution["workflowId"]), str(execution["runId"])))
    return found


def _tree(name: str, history: dict[str, Any], child_history: ChildHistory | None, depth: int) -> tuple[Span, Any]:
    builder = SpanBuilder()
    events = history.get("events") or []
    for event, at in zip(events, event_times(events), strict=True):
        builder.add(event, at)
    if builder.root is None:
        raise ValueError(f"history of {name} has no WorkflowExecutionStarted event")
    if child_history is not None and depth > 0:
        for span in walk(builder.root):
            if span.kind == "child_workflow":
                _fill_child(span, child_history, depth - 1)
    _order(builder.root)
    return builder.root, builder.job_status


def _fill_child(span: Span, child_history: ChildHistory, depth: int) -> None:
    """Hang the child's own spans under its span, their ids prefixed by the span's so they stay unique."""
    workflow_id, run_id = span.attributes.get("workflow_id"), span.attributes.get("run_id")
    history = child_history(str(workflow_id), str(run_id)) if workflow_id and run_id else None
    if history is None:
        return
    try:
        child_root, child_status = _tree(str(workflow_id), history, child_history, depth)
    except ValueError:
        return  # a history we cannot read: the child's span still says when it ran and how it ended
    span.attributes["child_status"] = child_status
    for key, value in child_root.attributes.items():
        span.attributes.setdefault(key, value)
    for child in child_root.children:
        _reparent(child, span.span_id, prefix=f"{span.span_id}/")
        span.children.append(child)


def _reparent(span: Span, parent_id: str, *, prefix: str) -> None:
    span.span_id, span.parent_id = prefix + span.span_id, parent_id
    for child in span.children:
        _reparent(child, span.span_id, prefix=prefix)


def _mark_pending(root: Span, pending: Sequence[PendingActivity]) -> None:
    """Tell each open activity span what the server knows of its current attempt."""
    open_spans = {
        span.attributes.get("activity_id"): span
        for span in walk(root)
        if span.kind == "activity" and span.end_time is None
    }
    for activity in pending:
        span = open_spans.get(activity.activity_id)
        if span is None:
            continue
        span.attributes.update(
            attempts=activity.attempt,
            state=activity.state,
            maximum_attempts=activity.maximum_attempts,
            next_attempt_at=activity.next_attempt_at.isoformat() if activity.next_attempt_at else None,
        )
        if activity.last_failure is not None:
            span.attributes["last_failure"] = activity.last_failure
        if activity.last_started_at is not None and activity.attempt > 1:
            span.events.append(
                SpanEvent(
                    name=f"attempt {activity.attempt} started",
                    time=activity.last_started_at,
                    attributes={"attempt": activity.attempt, "previous_failure": activity.last_failure},
                )
            )


def _order(span: Span) -> None:
    # Local activities are recorded when their workflow task completes, after commands issued earlier.
    span.children.sort(key=lambda child: child.start_time)
    for child in span.children:
        _order(child)


def _own_spans(span: Span) -> list[Span]:
    """The spans of the job's own workflow: those of its child workflows belong to other executions."""
    below = [s for child in span.children if child.kind != "child_workflow" for s in _own_spans(child)]
    return [span, *below]


def walk(span: Span) -> list[Span]:
    """The span and all its descendants, depth first, in order."""
    return [span, *(s for child in span.children for s in walk(child))]


def is_call(span: Span) -> bool:
    """A call to a model's deployment, run as an activity or a local activity."""
    return span.kind in ("activity", "local_activity") and span.attributes.get("activity_type") == "call_model"


def attach_costs(trace: Trace, rows: Sequence[BilledCall]) -> Trace:
    """Put each billed call's cost and tokens on its call span, and their sum on the trace.

    A row's idempotency key names its call sequence; the last activity of that call sequence is the one
    that succeeded and was billed. Calls of child workflows are billed to their own job, not this one.
    """
    calls = {span.attributes.get("call_seq"): span for span in _own_spans(trace.root) if is_call(span)}
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
