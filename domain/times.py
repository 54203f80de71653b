"""Times an API caller names (`from`, `to`), read in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

OUT_OF_RANGE = "is outside the years 1 to 9999 once read in UTC"


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; without an offset it is taken to be UTC already.

    Raises:
        ValueError: `OUT_OF_RANGE`: 0001-01-01T00:00+01:00 is in year 0 in UTC, 9999-12-31T23:00-05:00 in year
            10000, and no datetime holds them.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None
