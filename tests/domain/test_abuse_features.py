"""domain/abuse/features.py: a key's window of hand-made requests, as sums and as the feature vector."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.abuse import window_stats
from domain.abuse.features import (
    FEATURE_NAMES,
    OFF_HOURS_UTC,
    KeyWindow,
    RequestRecord,
    WindowStats,
    feature_dict,
    feature_vector,
    is_off_hours,
    summarize,
)
from store.queries import abuse as abuse_queries

START = datetime(2026, 11, 3, 21, 55, tzinfo=UTC)
END = START + timedelta(minutes=10)


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def features(*records: RequestRecord, start: datetime = START, end: datetime = END) -> dict[str, float]:
    return feature_dict(feature_vector(summarize(KeyWindow(start, end, records))))


def test_a_window_of_hand_made_requests() -> None:
    records = (
        RequestRecord(at(1), "fast", 100, 50, answered=True),
        RequestRecord(at(2), "fast", 300, 50, answered=True, near_duplicate=True),
        RequestRecord(at(6), "smart", 200, 100, answered=True),  # 22:01 UTC: off-hours
        RequestRecord(at(7), "fast", failed=True, violated=True),  # blocked: no tokens
        RequestRecord(at(8), None, failed=True),
    )

    got = features(*records)

    assert got == {
        "requests_per_min": pytest.approx(0.5),
        "tokens_per_min": pytest.approx(80.0),  # 800 tokens in 10 minutes
        # Input tokens 100, 300, 200: mean 200, population std sqrt(20000/3).
        "prompt_length_spread": pytest.approx((20000 / 3) ** 0.5 / 200),
        "near_duplicate_share": pytest.approx(0.2),
        "violation_rate": pytest.approx(0.2),
        "error_rate": pytest.approx(0.4),
        "distinct_models": 2.0,
        "off_hours_share": pytest.approx(0.6),
    }
    assert list(got) == list(FEATURE_NAMES)


def test_requests_outside_the_window_do_not_count() -> None:
    inside = RequestRecord(at(0), "fast", 10, 10, answered=True)
    before = RequestRecord(at(-0.01), "fast", 10, 10, answered=True, failed=True)
    at_end = RequestRecord(END, "fast", 10, 10, answered=True, failed=True)

    stats = summarize(KeyWindow(START, END, [before, inside, at_end]))

    assert (stats.requests, stats.failed, stats.input_tokens) == (1, 0, 10.0)


def test_an_empty_window_is_all_zeros() -> None:
    assert feature_vector(summarize(KeyWindow(START, END, []))) == (0.0,) * len(FEATURE_NAMES)


def test_a_template_has_no_spread_and_one_answer_has_none_to_measure() -> None:
    template = [RequestRecord(at(i), "fast", 400, 10, answered=True) for i in range(5)]
    assert features(*template)["prompt_length_spread"] == 0.0
    assert features(RequestRecord(at(1), "fast", 400, 10, answered=True))["prompt_length_spread"] == 0.0


def test_unanswered_requests_do_not_dilute_the_spread_of_prompt_lengths() -> None:
    answered = [
        RequestRecord(at(1), "fast", 100, 0, answered=True),
        RequestRecord(at(2), "fast", 300, 0, answered=True),
    ]
    refused = [RequestRecord(at(3), "fast", failed=True) for _ in range(4)]

    assert features(*answered, *refused)["prompt_length_spread"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("hour", "minute", "off"),
    [(21, 59, False), (22, 0, True), (0, 0, True), (5, 59, True), (6, 0, False), (12, 0, False)],
)
def test_off_hours_are_22_to_6_utc(hour: int, minute: int, off: bool) -> None:
    assert is_off_hours(datetime(2026, 11, 3, hour, minute, tzinfo=UTC)) is off


def test_off_hours_are_judged_in_utc_whatever_the_timestamps_zone() -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    # 02:30 in Kolkata is 21:00 UTC (working hours); 08:30 in Kolkata is 03:00 UTC (off-hours).
    assert is_off_hours(datetime(2026, 11, 4, 2, 30, tzinfo=kolkata)) is False
    assert is_off_hours(datetime(2026, 11, 4, 8, 30, tzinfo=kolkata)) is True


def test_the_store_counts_the_same_off_hours() -> None:
    assert abuse_queries.OFF_HOURS_UTC == OFF_HOURS_UTC


def test_store_sums_become_the_same_window() -> None:
    stats = summarize(KeyWindow(START, END, [RequestRecord(at(1), "fast", 120, 30, answered=True, failed=True)]))
    sums = {name: float(getattr(stats, name)) for name in abuse_queries.STAT_FIELDS}

    assert window_stats(600.0, sums) == stats
    assert isinstance(window_stats(600.0, sums).requests, int)


def test_shares_never_exceed_one() -> None:
    # Events at the window's edge can make SQL count more failures than requests.
    stats = WindowStats(window_s=600, requests=2, failed=3, violated=5, near_duplicates=4, off_hours=3)

    _, _, _, duplicates, violations, errors, _, off_hours = feature_vector(stats)

    assert (duplicates, violations, errors, off_hours) == (1.0, 1.0, 1.0, 1.0)
