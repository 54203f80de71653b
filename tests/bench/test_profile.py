"""The profile summary: our functions inclusive, every function by its own samples (no profiler runs here)."""

from __future__ import annotations

import pytest

from bench.profile import frame_shares

COLLAPSED = [
    "run (uvicorn/main.py:1);chat_completions (api/routes/chat.py:59);start_job (client/job_client.py:102) 6",
    "run (uvicorn/main.py:1);chat_completions (api/routes/chat.py:61);dumps (json/encoder.py:9) 2",
    "run (uvicorn/main.py:1);poll (temporalio/bridge/worker.py:3) 2",
    "not a sample line",
]


def test_our_functions_count_every_sample_under_them_whatever_the_line() -> None:
    shares = dict(frame_shares(COLLAPSED, ours=True))

    assert shares == {
        "chat_completions (api/routes/chat.py)": pytest.approx(0.8),  # both its lines
        "start_job (client/job_client.py)": pytest.approx(0.6),
    }


def test_every_function_counts_the_samples_taken_in_it() -> None:
    shares = frame_shares(COLLAPSED, ours=False)

    assert shares == [
        ("start_job (client/job_client.py)", pytest.approx(0.6)),
        ("dumps (json/encoder.py)", pytest.approx(0.2)),
        ("poll (temporalio/bridge/worker.py)", pytest.approx(0.2)),
    ]


def test_no_samples_give_no_shares() -> None:
    assert frame_shares([], ours=True) == []
