"""Bar charts as plain geometry for an inline SVG template (`templates/_bar_chart.html`): no chart library,
nothing to load, and the figures are in the page's own markup (readable by tests and screen readers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ROW_HEIGHT = 40
"""Pixels. Widths are percentages of the SVG's width instead of a viewBox, so the chart fills any container
while its text keeps the page's font size (a scaled viewBox shrinks the labels on a phone)."""
LABEL_BASELINE = 14
BAR_TOP = 20
BAR_HEIGHT = 12


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    value_text: str
    y: int
    """Top of the bar's row (its label sits above the bar)."""
    width_percent: float


@dataclass(frozen=True)
class BarChart:
    bars: tuple[Bar, ...]
    height: int
    label_baseline: int = LABEL_BASELINE
    bar_top: int = BAR_TOP
    bar_height: int = BAR_HEIGHT


def bar_chart(items: Sequence[tuple[str, float, str]]) -> BarChart:
    """One horizontal bar per `(label, value, value_text)`, in the given order, scaled to the largest value.

    A value of 0 keeps its row (with no bar): the label still says the item is there.
    """
    largest = max((value for _, value, _ in items), default=0.0)
    bars = tuple(
        Bar(
            label=label,
            value=value,
            value_text=text,
            y=index * ROW_HEIGHT,
            width_percent=100 * value / largest if largest > 0 else 0.0,
        )
        for index, (label, value, text) in enumerate(items)
    )
    return BarChart(bars=bars, height=max(len(bars), 1) * ROW_HEIGHT)
