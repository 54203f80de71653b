"""How a deployment's calls run: the routes file's `call`, with `auto` decided by the call's timeout."""

from __future__ import annotations

import pytest

from domain.routing import call_mode
from schemas.routes import CallMode, CallSetting


@pytest.mark.parametrize(
    ("call", "timeout_s", "expected"),
    [
        ("auto", 30.0, "local"),
        ("auto", 60.0, "local"),  # a call that cannot outlast the threshold runs in the workflow task
        ("auto", 60.5, "activity"),  # one that may run for minutes goes to the shared workers
        ("local", 600.0, "local"),  # as configured, whatever its timeout
        ("activity", 1.0, "activity"),
    ],
)
def test_auto_runs_short_calls_locally_and_long_ones_as_activities(
    call: CallSetting, timeout_s: float, expected: CallMode
) -> None:
    assert call_mode(call, timeout_s, local_call_max_s=60.0) == expected
