"""domain/abuse/heuristic.py: what the hand-weighted score says about typical windows, and that it is monotone."""

from __future__ import annotations

import dataclasses

import pytest

from domain.abuse.features import WindowStats
from domain.abuse.heuristic import heuristic_score

FLAG, THROTTLE, BLOCK = 0.7, 0.85, 0.95
"""DESIGN.md's example policy."""


def window(
    rpm: float,
    *,
    prompt: float = 700.0,
    spread: float = 0.9,
    output: float = 300.0,
    failed: float = 0.02,
    violated: float = 0.0,
    duplicates: float = 0.05,
    off_hours: float = 0.0,
    models: int = 1,
) -> WindowStats:
    """A 10-minute window at `rpm`, every other figure a share of its requests (all answered but the failed)."""
    n = round(rpm * 10)
    answered = n - round(n * failed)
    mean_sq = prompt**2 * (1 + spread**2)
    return WindowStats(
        window_s=600,
        requests=n,
        answered=answered,
        input_tokens=prompt * answered,
        input_tokens_sq=mean_sq * answered,
        output_tokens=output * answered,
        failed=round(n * failed),
        violated=round(n * violated),
        near_duplicates=round(n * duplicates),
        off_hours=round(n * off_hours),
        models=models,
    )


PERSON = window(1.0)
BURST = window(200.0, spread=0.1, duplicates=0.3)


def test_a_burst_scores_higher_than_a_person() -> None:
    assert heuristic_score(PERSON) < 0.1
    assert heuristic_score(BURST) > heuristic_score(PERSON)
    assert heuristic_score(BURST) >= THROTTLE


def test_a_batch_job_with_a_normal_mix_is_at_most_flagged() -> None:
    # Loud, but people's prompts: volume alone never throttles.
    assert heuristic_score(window(400.0, prompt=5000.0)) < THROTTLE


@pytest.mark.parametrize(
    ("name", "stats"),
    [
        ("guardrail probing", window(4.0, violated=0.6, failed=0.6)),
        ("error storm at a script's pace", window(60.0, failed=0.9, prompt=60.0)),
        ("scripted repeats", window(30.0, spread=0.05, duplicates=0.95)),
        ("token flood at night", window(30.0, prompt=40_000.0, output=3000.0, off_hours=1.0, spread=0.3)),
    ],
)
def test_clear_abuse_is_blocked(name: str, stats: WindowStats) -> None:
    assert heuristic_score(stats) >= BLOCK, name


@pytest.mark.parametrize(
    ("name", "stats"),
    [
        ("one failed request of one", dataclasses.replace(window(0.1), failed=1, answered=0)),
        ("a developer's failing requests", window(1.0, failed=0.8)),
        ("a night owl", window(1.0, off_hours=1.0)),
        ("a steady integration", window(6.0, spread=0.2, duplicates=0.15, off_hours=0.5)),
        ("a user asking twice", window(0.5, duplicates=0.4)),
    ],
)
def test_ordinary_oddities_are_not_even_flagged(name: str, stats: WindowStats) -> None:
    assert heuristic_score(stats) < FLAG, name


MORE_ABUSIVE = {
    "rpm": [0.5, 5.0, 50.0, 500.0],
    "failed": [0.0, 0.3, 0.6, 1.0],
    "violated": [0.0, 0.2, 0.5, 1.0],
    "duplicates": [0.0, 0.4, 0.8, 1.0],
    "off_hours": [0.0, 0.5, 1.0],
    "prompt": [100.0, 5000.0, 50_000.0],
    "spread": [1.5, 0.5, 0.1, 0.0],
}


@pytest.mark.parametrize("signal", sorted(MORE_ABUSIVE))
@pytest.mark.parametrize("rpm", [0.3, 3.0, 30.0, 300.0])
def test_more_of_any_sign_of_abuse_never_lowers_the_score(signal: str, rpm: float) -> None:
    base = {"rpm": rpm, "failed": 0.3, "violated": 0.1, "duplicates": 0.3, "off_hours": 0.5}
    scores = [heuristic_score(window(**{**base, signal: value})) for value in MORE_ABUSIVE[signal]]  # type: ignore[arg-type]

    assert scores == sorted(scores), scores
    assert all(0.0 <= s <= 1.0 for s in scores)
