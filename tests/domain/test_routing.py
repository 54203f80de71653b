"""How a deployment's calls run: the routes file's `call`, with `auto` decided by who waits and the timeout."""

from __future__ import annotations

import pytest

from domain.routing import call_mode
from schemas.routes import CallMode, CallSetting


@pytest.mark.parametrize(
    ("call", "timeout_s", "synchronous", "expected"),
    [
        ("auto", 30.0, True, "local"),
        ("auto", 60.0, True, "local"),  # a call that cannot outlast the threshold runs in the workflow task
        ("auto", 60.5, True, "activity"),  # one that may run for minutes goes to the shared workers
        ("auto", 30.0, False, "activity"),  # nobody waits: the shared workers, where a query can follow it
        ("local", 600.0, False, "local"),  # as configured, whatever its timeout
        ("activity", 1.0, True, "activity"),
    ],
)
def test_auto_runs_short_waited_calls_locally_and_the_others_as_activities(
    call: CallSetting, timeout_s: float, synchronous: bool, expected: CallMode
) -> None:
    assert call_mode(call, timeout_s, local_call_max_s=60.0, synchronous=synchronous) == expected
