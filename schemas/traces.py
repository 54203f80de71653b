"""A job's trace: a span tree read back from its workflow history, with the costs the database logged."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from schemas.jobs import JobStatus

SpanKind = Literal["workflow", "local_activity", "activity", "reroute", "park", "update", "timer", "cancel"]
SpanStatus = Literal["ok", "error", "running", "cancelled"]


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
    children: list[Span] = []


class Trace(BaseModel):
    job_id: str
    status: JobStatus
    root: Span
    cost_usd: float = 0.0
    """Sum of the job's priced calls; each call_model span carries its own share."""
    unpriced_calls: int = 0
    """Calls whose deployment has no known price: not in `cost_usd`."""
    saved_usd: float = 0.0
    """What a response-cache hit saved (the preflight span's `cache_hit` names the answer reused)."""


class BilledCall(BaseModel):
    """What a trace needs of one `model_cost_logs` row."""

    idempotency_key: str
    """`schemas.contracts.cost_key(job_id, call_seq)`: names the call the row billed."""
    cost_usd: float | None
    """None: unpriced."""
    saved_usd: float | None = None
    input_tokens: int
    output_tokens: int
