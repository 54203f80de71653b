"""Times a caller names are read in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.times import OUT_OF_RANGE, as_utc


def test_a_time_without_an_offset_is_utc_and_one_with_an_offset_is_moved_to_utc() -> None:
    assert as_utc(datetime(2026, 11, 26, 12, 0)) == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    moved = as_utc(datetime(2026, 11, 26, 13, 0, tzinfo=paris))
    assert moved == datetime(2026, 11, 26, 12, 0, tzinfo=UTC) and moved.tzinfo is UTC


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_a_time_outside_the_calendar_once_in_utc_is_refused(moment: datetime) -> None:
    with pytest.raises(ValueError, match=OUT_OF_RANGE):
        as_utc(moment)
