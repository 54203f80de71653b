"""Jinja filters for the figures pages show."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def usd(value: float) -> str:
    """Dollars with as many decimals as a small amount needs: one call of a cheap model costs a few
    millionths of a dollar, which two decimals would show as $0.00 — the same as no spend at all."""
    if value == 0:
        return "$0.00"
    magnitude = abs(value)
    if magnitude < 0.000001:
        return "< $0.000001"  # spend, but less than six decimals show
    decimals = 2 if magnitude >= 1 else 4 if magnitude >= 0.01 else 6
    return f"${value:,.{decimals}f}"


def count(value: int) -> str:
    return f"{value:,}"


FILTERS: dict[str, Callable[..., Any]] = {"usd": usd, "count": count}
