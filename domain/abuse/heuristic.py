"""A hand-weighted abuse score in 0..1, for tenants whose history is too short to learn from.

Each kind of abuse is one signal in 0..1, built so that a signal alone stays under the block threshold (0.95 in
DESIGN.md's example policy) unless the window holds enough evidence of something no legitimate client does:
volume alone (a batch job) reaches at most `VOLUME_ALONE`, a flag; errors alone at a low rate (a developer
debugging a request) stay a flag too. Signals combine as a noisy-OR, `1 - Π(1 - s)`, so two independent signs
of abuse score higher than either.

Shares (duplicates, violations, errors, off-hours) are shrunk toward 0 by `PRIOR_REQUESTS` pseudo-requests
first: one failed request of one is not an error storm, fifty of fifty are.
"""

from __future__ import annotations

import math

from domain.abuse.features import WindowStats, feature_vector

PRIOR_REQUESTS = 5.0
"""Pseudo-requests without any sign of abuse added to every share: the evidence a share needs to count."""
VOLUME_ALONE = 0.6
"""The most that request rate or token volume contribute on their own: a legitimate batch job is loud too."""
RATE_RAMP = (20.0, 250.0)
"""Requests per minute: no signal at the first, full at the second (log scale)."""
SCRIPTED_RAMP = (2.0, 20.0)
"""Requests per minute from a person's pace to a script's: what turns repeats or errors from a mistake into a
pattern."""
TOKENS_RAMP = (50_000.0, 1_500_000.0)
"""Tokens per minute, likewise."""
TEMPLATE_MIN_ANSWERED = 20
"""Answered requests needed before a low prompt-length spread says "a script"."""


def shrunk(share: float, requests: int) -> float:
    """The share as if `PRIOR_REQUESTS` more requests had shown no sign of it."""
    return share * requests / (requests + PRIOR_REQUESTS)


def ramp(value: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, linear between."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return (value - low) / (high - low)


def log_ramp(value: float, low: float, high: float) -> float:
    return ramp(math.log(max(value, 1e-9)), math.log(low), math.log(high))


def heuristic_score(stats: WindowStats) -> float:
    """The window's abuse score: monotone in every signal (more of any sign of abuse never lowers it)."""
    rpm, tpm, spread, duplicates, violations, errors, _models, off_hours = feature_vector(stats)
    n = stats.requests
    rate = log_ramp(rpm, *RATE_RAMP)
    volume = log_ramp(tpm, *TOKENS_RAMP)
    loud = max(rate, volume)
    scripted = log_ramp(rpm, *SCRIPTED_RAMP)
    templated = 1.0 - ramp(spread, 0.1, 0.5) if stats.answered >= TEMPLATE_MIN_ANSWERED else 0.0
    signals = (
        VOLUME_ALONE * loud,
        # Scraping: many requests from one template.
        templated * rate,
        # Scripted repeats: the same prompt again and again, at a script's pace.
        ramp(shrunk(duplicates, n), 0.4, 0.85) * (0.6 + 0.4 * scripted),
        # Probing the guardrails: blocked requests are a deliberate act at any rate.
        ramp(shrunk(violations, n), 0.1, 0.5),
        # An error storm: errors at a person's pace are a developer at work, at a script's a storm.
        ramp(shrunk(errors, n), 0.3, 0.8) * (0.6 + 0.4 * scripted),
        # A token flood at night, when nobody watches.
        ramp(shrunk(off_hours, n), 0.5, 0.9) * volume,
    )
    remaining = 1.0
    for signal in signals:
        remaining *= 1.0 - signal
    return 1.0 - remaining
