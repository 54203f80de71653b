"""Nearest-rank percentiles: each one a measured value, checked on values whose ranks are easy to count."""

from __future__ import annotations

import pytest

from domain.percentiles import nearest_rank, percentiles


def test_of_one_to_a_hundred_the_percentile_is_its_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # any order
    assert percentiles(values, (50, 95, 99, 100)) == {50: 50.0, 95: 95.0, 99: 99.0, 100: 100.0}


def test_a_percentile_is_a_measured_value_never_an_interpolation() -> None:
    # Ranks ceil(0.5 * 4) = 2, ceil(0.95 * 4) = 4: no value between the measured ones.
    assert percentiles([10, 20, 30, 1000], (50, 95)) == {50: 20, 95: 1000}


def test_p95_of_twenty_values_is_the_nineteenth() -> None:
    # 0.95 * 20 is 19.000000000000004 in floats: the rank must still be 19, not 20.
    values = [float(v) for v in range(1, 21)]
    assert nearest_rank(values, 95) == 19.0


def test_one_value_is_every_percentile_and_none_has_none() -> None:
    assert percentiles([7.5], (50, 99)) == {50: 7.5, 99: 7.5}
    assert percentiles([], (50,)) is None


@pytest.mark.parametrize("percent", [0, -1, 100.5])
def test_a_percent_outside_0_to_100_is_refused(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        nearest_rank([1.0], percent)
