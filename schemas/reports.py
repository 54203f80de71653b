"""The reports over a recent window (`GET /v1/metrics/summary`, `GET /v1/errors`) and the event list
(`GET /v1/events`), as the API returns them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

UNKNOWN_ERROR_CODE = "(unknown)"
"""The group of failures whose event names no code (`_fail` always names one; rows written otherwise may not)."""


class JobCountRow(NamedTuple):
    """Jobs of one tenant and key with an event of one type in the window."""

    tenant_id: str
    key_id: str | None
    type: str
    jobs: int


class UsageRow(NamedTuple):
    """The window's `model_cost_logs` rows of one group (model, key or tenant), summed."""

    group: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced_calls: int
    jobs: int


class JobLatency(NamedTuple):
    tenant_id: str
    key_id: str | None
    ms: float


class UpstreamLatency(NamedTuple):
    model: str
    ms: float


class TenantRows(NamedTuple):
    """What a summary reads about one tenant, or about every tenant (the platform admin's `by_tenant`)."""

    counts: list[JobCountRow]
    usage: list[UsageRow]
    """By key for one tenant; by tenant for every tenant."""
    job_latencies: list[JobLatency]


class SummaryRows(NamedTuple):
    """Everything `domain.metrics_summary.build_summary` needs, as `store.queries.summary_rows` reads it."""

    tenant: TenantRows
    by_model: list[UsageRow]
    upstream_latencies: list[UpstreamLatency]
    every_tenant: TenantRows | None


class LatencyPercentiles(BaseModel):
    """Nearest-rank percentiles (`domain.percentiles`): each is a measured value. None when nothing was measured."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    count: int = 0
    """How many values they were taken from: the window's newest, at most `store.queries.LATENCY_SAMPLE`."""


class JobCounts(BaseModel):
    """Jobs (not events) in the window, by what happened to them. A job that parked and was then repaired counts
    in `parked` and in how it ended."""

    started: int = 0
    succeeded: int = 0
    """Answered, from a provider or from the response cache."""
    failed: int = 0
    cancelled: int = 0
    parked: int = 0
    cache_hits: int = 0
    """Of `succeeded`, those answered from the response cache."""


class UsageTotals(BaseModel):
    """What the window's model calls (`model_cost_logs`) used, by the rules of `GET /v1/costs`."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """What the priced calls cost; an unpriced call adds nothing here and one to `unpriced_calls`."""
    unpriced_calls: int = 0


class ModelSummary(UsageTotals):
    model: str
    """The deployment that answered, `provider/model`."""
    jobs: int
    """Jobs with a call to this model in the window."""
    upstream_latency_ms: LatencyPercentiles
    """Of its calls (cache hits made none)."""


class GroupSummary(UsageTotals):
    group: str
    """A key id (`(admin)` for the environment's admin key) or a tenant id."""
    jobs: JobCounts
    job_latency_ms: LatencyPercentiles
    """From a job's start to its end (park time included), over the jobs that ended in the window."""


class _Window(BaseModel):
    # `from` is a Python keyword: the fields are `start`/`end`, and the JSON says `from`/`to`.
    model_config = ConfigDict(populate_by_name=True)

    window: str
    start: datetime = Field(alias="from")
    """Inclusive."""
    end: datetime = Field(alias="to")
    """Exclusive."""


class MetricsSummary(_Window, UsageTotals):
    tenant_id: str
    jobs: JobCounts
    job_latency_ms: LatencyPercentiles
    upstream_latency_ms: LatencyPercentiles
    by_model: list[ModelSummary] = []
    """By cost, highest first, then by name."""
    by_key: list[GroupSummary] = []
    """By cost, highest first, then by key id."""
    by_tenant: list[GroupSummary] | None = None
    """Every tenant, for the platform admin only; None for anyone else."""


class ErrorGroup(BaseModel):
    code: str
    count: int
    """Failures with this code (a job run again and failed again counts twice)."""
    example_job_ids: list[str]
    """Up to five jobs, the most recent failure first."""
    last_seen_at: datetime
    message: str
    """The most recent failure's message."""


class ErrorReport(_Window):
    data: list[ErrorGroup]
    """By count, highest first, then by code."""


class EventPublic(BaseModel):
    id: int
    type: str
    tenant_id: str
    job_id: str | None
    payload: dict[str, Any]
    """Never prompt text or secrets (`schemas.contracts.EventType`)."""
    created_at: datetime


class EventList(BaseModel):
    data: list[EventPublic]
    """Newest first (by the order they were written)."""
    next_cursor: str | None = None
