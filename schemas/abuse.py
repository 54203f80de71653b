"""Abuse detection's values that cross a boundary: the score preflight reads, and the training workflow's and
activities' inputs and outputs (one each, so fields can be added)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

ScoringMethod = Literal["model", "heuristic"]

ABUSE_TRAINING_WORKFLOW_TYPE = "AbuseTrainingWorkflow"
ABUSE_TRAINING_SCHEDULE_ID = "kintsugi-abuse-training"
"""The Temporal Schedule that starts `AbuseTrainingWorkflow` every hour (`ensure_abuse_training_schedule`)."""


class AbuseScore(BaseModel):
    """A key's abuse score now (`activities.abuse.AbuseScorer`); the policy's thresholds decide what it means."""

    score: float
    """0..1: with a tenant model, the higher of the model's and the heuristic's scores."""
    method: ScoringMethod
    """`model` once the tenant has a trained model, `heuristic` until then."""
    features: dict[str, float]
    """The key's window as the scorers saw it (`domain.abuse.features.FEATURE_NAMES`)."""


class AbuseTrainingOutput(BaseModel):
    """What a training run did, summed over the tenants it visited (also across continue-as-new)."""

    trained: int = 0
    too_little_history: int = 0
    """Tenants that keep the heuristic (fewer windows than `domain.abuse.model.MIN_TRAINING_WINDOWS`)."""
    failed: list[str] = []
    """Tenants whose training failed after its retries; the next run tries them again."""


class AbuseTrainingInput(BaseModel):
    """Empty when the schedule starts a run; continue-as-new carries the run's progress in the other fields."""

    until: datetime | None = None
    """The end of the history trained on; None: the run's start time."""
    after: str | None = None
    """The last tenant id already visited."""
    done: AbuseTrainingOutput = AbuseTrainingOutput()


class TenantsWithHistoryInput(BaseModel):
    since: datetime
    until: datetime
    after: str | None = None
    limit: int


class TenantsWithHistoryOutput(BaseModel):
    tenant_ids: list[str]


class TrainTenantInput(BaseModel):
    tenant_id: str
    since: datetime
    until: datetime
    """Also the model's `trained_at`: a retried activity writes the same row."""


class TrainTenantOutput(BaseModel):
    tenant_id: str
    outcome: Literal["trained", "too_little_history"]
    windows: int
