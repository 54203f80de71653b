"""Abuse detection: a key's window as features (`features`), a hand-weighted score (`heuristic`) and a per-tenant
isolation forest (`model`), combined here.

With a tenant model the score is the higher of the two: the forest knows the tenant's normal, the heuristic
knows what abuse looks like anywhere, and either one may see what the other misses. Measured by
`make bench-guard`: the combination's ROC AUC is above either alone, and, unlike a noisy-OR of the two, it never
throttles the bench's legitimate batch job (each caps what volume alone can score).
"""

from __future__ import annotations

from collections.abc import Mapping

from domain.abuse.features import FEATURE_NAMES, WindowStats, feature_dict, feature_vector
from domain.abuse.heuristic import heuristic_score
from domain.abuse.model import AbuseModel
from schemas.abuse import AbuseScore

__all__ = ["FEATURE_NAMES", "AbuseScore", "score_window", "window_stats"]


def window_stats(window_s: float, sums: Mapping[str, float]) -> WindowStats:
    """A `WindowStats` from the store's sums (`store.queries.abuse.STAT_FIELDS`)."""
    return WindowStats(
        window_s=window_s,
        requests=int(sums["requests"]),
        answered=int(sums["answered"]),
        input_tokens=float(sums["input_tokens"]),
        input_tokens_sq=float(sums["input_tokens_sq"]),
        output_tokens=float(sums["output_tokens"]),
        failed=int(sums["failed"]),
        violated=int(sums["violated"]),
        near_duplicates=int(sums["near_duplicates"]),
        off_hours=int(sums["off_hours"]),
        models=int(sums["models"]),
    )


def score_window(stats: WindowStats, model: AbuseModel | None) -> AbuseScore:
    heuristic = heuristic_score(stats)
    features = feature_dict(feature_vector(stats))
    if model is None:
        return AbuseScore(score=heuristic, method="heuristic", features=features)
    return AbuseScore(score=max(heuristic, model.score(stats)), method="model", features=features)
