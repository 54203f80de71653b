"""Report windows as a person types them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.windows import parse_window


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("366d", timedelta(days=366)),
    ],
)
def test_a_number_and_a_unit_name_a_window(text: str, length: timedelta) -> None:
    assert parse_window(text) == length


@pytest.mark.parametrize("text", ["", "1", "h", "0h", "-1h", "1.5h", "1H", "1 h", "1y", "01h", "367d", "53w", "1h30m"])
def test_anything_else_is_refused_with_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"15m|at most 366d"):
        parse_window(text)
