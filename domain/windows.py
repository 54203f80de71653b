"""Report windows: `15m`, `1h`, `24h`, `7d` — how far back a report looks from now."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_WINDOW = re.compile(r"([1-9][0-9]{0,5})([mhdw])")

MAX_WINDOW = timedelta(days=366)
"""The longest window a report reads: a year of rows is already more than a summary should scan."""


def parse_window(text: str) -> timedelta:
    """The length a window names: a positive whole number and a unit, `m` (minutes), `h`, `d` or `w` (weeks).

    Raises:
        ValueError: for anything else, or a window longer than `MAX_WINDOW`; the message says what is accepted.
    """
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError("a window is a whole number and a unit: m, h, d or w (15m, 1h, 24h, 7d)")
    window = int(match.group(1)) * _UNITS[match.group(2)]
    if window > MAX_WINDOW:
        raise ValueError(f"a window is at most {MAX_WINDOW.days}d")
    return window
