"""Latency percentiles by nearest rank: each is one of the measured values, never an interpolation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def nearest_rank(sorted_values: Sequence[float], percent: float) -> float:
    """The `percent`-th percentile of values sorted ascending: the smallest value with at least `percent`% of
    the values at or below it (rank `ceil(percent / 100 * n)`). p100 is the maximum; any p of one value is it.

    Raises:
        ValueError: for no values or a percent outside (0, 100].
    """
    if not sorted_values:
        raise ValueError("no values")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], not {percent}")
    # Rounded first: 0.95 * 100 is 95.00000000000001 in floats, and its ceiling would skip a rank.
    rank = max(1, math.ceil(round(percent / 100 * len(sorted_values), 9)))
    return sorted_values[rank - 1]


def percentiles(values: Iterable[float], percents: Sequence[float]) -> dict[float, float] | None:
    """Each of `percents` of `values` (any order) by nearest rank; None when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return {p: nearest_rank(ordered, p) for p in percents}
