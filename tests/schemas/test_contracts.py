"""Each string contract reads back what it wrote, and refuses what it did not write."""

from __future__ import annotations

from schemas.contracts import (
    call_activity_id,
    call_seq_of_activity_id,
    call_seq_of_cost_key,
    cost_key,
    deployment_summary,
    event_key,
    parse_deployment_summary,
)


def test_cost_key_names_its_call_even_when_the_job_id_has_colons() -> None:
    assert call_seq_of_cost_key(cost_key("job_abc", 3)) == 3
    assert call_seq_of_cost_key(cost_key("job:with:colons", 12)) == 12
    assert call_seq_of_cost_key("job_abc") is None
    assert call_seq_of_cost_key("job_abc:x") is None


def test_call_activity_id_round_trips_and_ignores_other_activities() -> None:
    assert call_seq_of_activity_id(call_activity_id(7)) == 7
    assert call_seq_of_activity_id("1") is None  # Temporal's own numbering of other activities
    assert call_seq_of_activity_id("call-") is None


def test_deployment_summary_keeps_slashes_in_model_names() -> None:
    assert parse_deployment_summary(deployment_summary("local", "meta/llama-3")) == ("local", "meta/llama-3")
    assert parse_deployment_summary("no-slash") is None
    assert parse_deployment_summary("/model") is None


def test_event_keys_differ_per_run_sequence_and_type() -> None:
    keys = {
        event_key("job", run, seq, type)
        for run in ("r1", "r2")
        for seq in (1, 2)
        for type in ("job.succeeded", "job.cancelled")
    }
    assert len(keys) == 8
