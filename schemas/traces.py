"""A job's trace: a span tree read back from its workflow history, with the costs the database logged."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from schemas.jobs import JobStatus

SpanKind = Literal[
    "workflow", "child_workflow", "local_activity", "activity", "reroute", "park", "update", "timer", "cancel"
]
SpanStatus = Literal["ok", "error", "running", "cancelled"]


class SpanEvent(BaseModel):
    """A moment within a span: an attempt that failed, a guardrail's decision, a cache hit."""

    name: str
    time: datetime
    attributes: dict[str, Any] = {}


class Span(BaseModel):
    span_id: str
    """Stable within one history: the id of the event that opened the span."""
    parent_id: str | None
    name: str
    kind: SpanKind
    start_time: datetime
    end_time: datetime | None
    """None while the span is still open (a running job, a pending activity)."""
    status: SpanStatus
    attributes: dict[str, Any] = {}
    events: list[SpanEvent] = []
    children: list[Span] = []


class Trace(BaseModel):
    job_id: str
    tenant_id: str | None = None
    """Set by the loader, which knows whose job it read; a history alone does not say."""
    status: JobStatus
    root: Span
    cost_usd: float = 0.0
    """Sum of the job's priced calls; each call_model span carries its own share."""
    unpriced_calls: int = 0
    """Calls whose deployment has no known price: not in `cost_usd`."""
    saved_usd: float = 0.0
    """What a response-cache hit saved (the preflight span's `cache_hit` names the answer reused)."""


class TraceSummary(BaseModel):
    """One row of `GET /v1/traces`, read from Temporal's visibility store alone."""

    job_id: str
    tenant_id: str
    status: JobStatus
    model: str
    started_at: datetime
    closed_at: datetime | None = None
    duration_ms: int | None = None
    """None while the job runs."""


class TraceList(BaseModel):
    data: list[TraceSummary]
    next_cursor: str | None = None


class PendingActivity(BaseModel):
    """What the server's `describe()` knows of an activity still running or waiting for its next attempt."""

    activity_id: str
    activity_type: str
    state: str
    """`scheduled` (waiting for a worker or a retry), `started`, `cancel_requested`, `paused`."""
    attempt: int
    maximum_attempts: int | None = None
    """None: unlimited."""
    last_started_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_failure: dict[str, Any] | None = None
    """`{message, type}` of the attempt that failed last."""


class BilledCall(BaseModel):
    """What a trace needs of one `model_cost_logs` row."""

    idempotency_key: str
    """`schemas.contracts.cost_key(job_id, call_seq)`: names the call the row billed."""
    cost_usd: float | None
    """None: unpriced."""
    saved_usd: float | None = None
    input_tokens: int
    output_tokens: int
