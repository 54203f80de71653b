"""A key's behaviour over a sliding window, as the fixed-order feature vector both abuse scorers read.

Raw per-request records (`RequestRecord`, which the bench generates without a database) are summed into a
`WindowStats`; the store computes the same sums in one SQL statement (`store.queries.abuse`), so a window of a
key sending 100 requests a second is one row, not 60,000. Every feature is derived from those sums alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

WINDOW = timedelta(minutes=10)
"""The default window: long enough that a normal key has a handful of requests in it, short enough that a
burst shows within a minute or two and a blocked key recovers ten minutes after it stops."""

OFF_HOURS_UTC = (22, 6)
"""Requests from 22:00 (inclusive) to 06:00 (exclusive) UTC count as off-hours. A tenant whose working day
falls there is learned as normal by its own model; the heuristic only weighs off-hours together with volume."""

FEATURE_NAMES = (
    "requests_per_min",
    "tokens_per_min",
    "prompt_length_spread",
    "near_duplicate_share",
    "violation_rate",
    "error_rate",
    "distinct_models",
    "off_hours_share",
)
"""The order of `feature_vector`; a trained model stores it and refuses a vector of another layout."""

FeatureVector = tuple[float, ...]


@dataclass(frozen=True)
class RequestRecord:
    """One request (job) of a key, as its events, cost rows and similarity rows describe it."""

    at: datetime
    """When the job started (its `job.started` event), timezone-aware."""
    model: str | None = None
    """The route the request named."""
    input_tokens: int = 0
    output_tokens: int = 0
    answered: bool = False
    """A model answered (a `model_cost_logs` row): only answered requests have token counts."""
    failed: bool = False
    """`job.failed` for a fault of the request's own (`store.queries.abuse.KEY_FAULTS`): not an upstream outage,
    the tenant's budget or our own throttling."""
    violated: bool = False
    """A guardrail blocked it (or failed its answer), or the policy refused it for its content, model, region or
    cost (`store.queries.abuse.VIOLATIONS`): a redaction or a logged finding is the policy serving normal
    traffic, not a violation."""
    near_duplicate: bool = False
    """Its prompt repeated an earlier one of the tenant (a `prompt_similarity_logs` row)."""


@dataclass(frozen=True)
class KeyWindow:
    """A key's requests in [start, end)."""

    start: datetime
    end: datetime
    requests: Iterable[RequestRecord]


@dataclass(frozen=True)
class WindowStats:
    """The sums of one key's window: what SQL can compute in a GROUP BY, and all that the features need."""

    window_s: float
    requests: int = 0
    answered: int = 0
    input_tokens: float = 0.0
    """Summed over answered requests, like the two below."""
    input_tokens_sq: float = 0.0
    """The sum of squared input tokens: with `input_tokens`, the spread of prompt lengths."""
    output_tokens: float = 0.0
    failed: int = 0
    violated: int = 0
    near_duplicates: int = 0
    off_hours: int = 0
    models: int = 0
    """Distinct routes named."""


def is_off_hours(at: datetime) -> bool:
    start, end = OFF_HOURS_UTC
    hour = at.hour if at.tzinfo is UTC else at.astimezone(UTC).hour
    return hour >= start or hour < end


def summarize(window: KeyWindow) -> WindowStats:
    """The sums of the records that fall in the window (the store's SQL computes the same)."""
    requests = answered = failed = violated = duplicates = off_hours = 0
    input_tokens = input_sq = output_tokens = 0.0
    models: set[str] = set()
    for record in window.requests:
        if not window.start <= record.at < window.end:
            continue
        requests += 1
        failed += record.failed
        violated += record.violated
        duplicates += record.near_duplicate
        off_hours += is_off_hours(record.at)
        if record.model is not None:
            models.add(record.model)
        if record.answered:
            answered += 1
            input_tokens += record.input_tokens
            input_sq += float(record.input_tokens) ** 2
            output_tokens += record.output_tokens
    return WindowStats(
        window_s=(window.end - window.start).total_seconds(),
        requests=requests,
        answered=answered,
        input_tokens=input_tokens,
        input_tokens_sq=input_sq,
        output_tokens=output_tokens,
        failed=failed,
        violated=violated,
        near_duplicates=duplicates,
        off_hours=off_hours,
        models=len(models),
    )


def feature_vector(stats: WindowStats) -> FeatureVector:
    """The window's features in `FEATURE_NAMES` order; an empty window is all zeros."""
    minutes = stats.window_s / 60.0
    n = stats.requests
    return (
        n / minutes,
        (stats.input_tokens + stats.output_tokens) / minutes,
        prompt_length_spread(stats),
        _share(stats.near_duplicates, n),
        _share(stats.violated, n),
        _share(stats.failed, n),
        float(stats.models),
        _share(stats.off_hours, n),
    )


def feature_dict(vector: FeatureVector) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, vector, strict=True))


def prompt_length_spread(stats: WindowStats) -> float:
    """The coefficient of variation (std / mean) of the answered requests' input tokens: near 0 for a script
    sending one template, ~1 for people. 0 with fewer than two answered requests (no spread to measure)."""
    n = stats.answered
    if n < 2 or stats.input_tokens <= 0:
        return 0.0
    mean = stats.input_tokens / n
    # Summed in floats by SQL, so rounding can leave a tiny negative variance for identical lengths.
    variance = max(stats.input_tokens_sq / n - mean * mean, 0.0)
    return math.sqrt(variance) / mean


def _share(part: int, whole: int) -> float:
    # Events at the window's edges (a job that started just before it) can make a count exceed the requests.
    return min(part / whole, 1.0) if whole else 0.0
