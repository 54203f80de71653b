"""String contracts that one module writes and another reads back: each builder sits beside its parser.

The workflow builds these; the trace builder, the cost rows and (later) the rules engine read them. A format
changes here or nowhere.
"""

from __future__ import annotations

from typing import Literal

EventType = Literal[
    "job.started",
    "job.rerouted",
    "job.parked",
    "job.repaired",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "job.cache_hit",
    "guardrail.triggered",
    "policy.refused",
    "abuse.flagged",
    "budget.exceeded",
]
"""Events a job writes to the outbox (`event_logs.type`); rules will match on these. Payloads never hold
prompt text or secrets: a guardrail's event names kinds and offsets, never what matched."""

JOB_WORKFLOW_TYPE = "LLMJobWorkflow"
"""The workflow type of every job: the visibility query of job lists and the worker's registration agree on it."""

_CALL_PREFIX = "call-"


def cost_key(job_id: str, call_seq: int) -> str:
    """The idempotency key of a billed call's `model_cost_logs` row: one row per job and call number."""
    return f"{job_id}:{call_seq}"


def call_seq_of_cost_key(key: str) -> int | None:
    """The call number inside a `cost_key`; None for a key of another shape."""
    _, _, seq = key.rpartition(":")
    return int(seq) if seq.isdigit() else None


def call_activity_id(call_seq: int) -> str:
    """The activity id of the job's `call_seq`-th upstream call, so history says which call an attempt was."""
    return f"{_CALL_PREFIX}{call_seq}"


def call_seq_of_activity_id(activity_id: str) -> int | None:
    seq = activity_id.removeprefix(_CALL_PREFIX) if activity_id.startswith(_CALL_PREFIX) else ""
    return int(seq) if seq.isdigit() else None


def deployment_summary(provider: str, model: str) -> str:
    """`provider/model`: the summary of a call in the Temporal UI, and how traces name a deployment."""
    return f"{provider}/{model}"


def parse_deployment_summary(summary: str) -> tuple[str, str] | None:
    """(provider, model) from a `deployment_summary`; None for a summary of another shape. Provider names
    hold no `/`, model names may (`meta/llama-3`), so the first `/` splits them."""
    provider, sep, model = summary.partition("/")
    return (provider, model) if sep and provider else None


def event_key(job_id: str, run_id: str, event_seq: int, type: EventType) -> str:
    """The idempotency key of a lifecycle event row: a replayed or retried write adds nothing.

    The type is part of it because a workflow task whose completion the server refused (a cancel arrived
    while its local activities ran) has already written its events; the task run again may take another
    path, and its events must not be dropped as repeats of different ones with the same number.
    """
    return f"{job_id}:{run_id}:{event_seq}:{type}"
