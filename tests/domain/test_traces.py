"""Traces: `build_trace` on recorded job histories, and costs attached to the billed call.

The recordings (`tests.support.record_histories`) run their calls as local activities, the default, except
those named `*_activity`; histories of older workflow revisions (`revision-N/`) must still make traces, since
Temporal keeps a finished job's history for its retention period.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.traces.build import attach_costs, build_trace, is_call, walk
from schemas.contracts import cost_key
from schemas.traces import BilledCall, Span, Trace
from tests.support.common import HISTORIES
from tests.support.harness import FAST_RETRY


def _is_job(path: Path) -> bool:
    start = json.loads(path.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]
    return bool(start["workflowType"]["name"] == "LLMJobWorkflow")


EVERY_HISTORY = sorted(path for path in HISTORIES.glob("**/*.json") if _is_job(path))
"""Every job's history, this revision's recordings and older revisions' (`revision-N/`); other workflows'
recordings (abuse training's, the export's) are not jobs."""


def history(name: str) -> dict[str, Any]:
    return json.loads((HISTORIES / f"{name}.json").read_text())


def event_types(name: str) -> list[str]:
    return [event["eventType"].removeprefix("EVENT_TYPE_") for event in history(name)["events"]]


def trace_of(name: str) -> Trace:
    return build_trace(f"job_{name}", history(name))


def outline(span: Span) -> list[tuple[str, str, str]]:
    return [(child.kind, child.name, child.status) for child in span.children]


def calls(trace: Trace) -> list[Span]:
    return [span for span in walk(trace.root) if is_call(span)]


def deployment(trace: Trace, suffix: str, provider: str = "up") -> str:
    """`provider/<run>-<suffix>`: the recordings name each run's models after its task queue."""
    run = str(trace.root.attributes["task_queue"]).removeprefix("tq-")
    return f"{provider}/{run}-{suffix}"


def park_of(trace: Trace) -> Span:
    [park] = [span for span in trace.root.children if span.kind == "park"]
    return park


def steps(trace: Trace) -> list[tuple[str, str, str]]:
    """The job's outline without the write of its parked event (`record_events`), which begins as it parks."""
    return [step for step in outline(trace.root) if step[1] != "record_events"]


@pytest.mark.parametrize("path", EVERY_HISTORY, ids=lambda path: str(path.relative_to(HISTORIES).with_suffix("")))
def test_every_span_is_closed_ordered_and_linked(path: Path) -> None:
    trace = build_trace(f"job_{path.stem}", json.loads(path.read_text()))

    spans = walk(trace.root)
    assert len({span.span_id for span in spans}) == len(spans)
    assert trace.root.parent_id is None
    for span in spans:
        assert span.end_time is not None, span
        assert span.start_time <= span.end_time, span
        assert span.status != "running", span
        for child in span.children:
            assert child.parent_id == span.span_id
        assert [c.start_time for c in span.children] == sorted(c.start_time for c in span.children)
    assert trace.root.attributes["workflow_type"] == "LLMJobWorkflow"


def test_success_is_preflight_one_call_postflight() -> None:
    # A submitted job: nobody waits on it, so its call runs as an activity on the shared workers.
    trace = trace_of("success")

    assert trace.status == "succeeded"
    assert trace.root.status == "ok"
    assert outline(trace.root) == [
        ("local_activity", "preflight", "ok"),
        ("activity", f"call {deployment(trace, 'a')}", "ok"),
        ("local_activity", "postflight", "ok"),
    ]
    call = calls(trace)[0].attributes
    assert (call["provider"], call["call_seq"], call["attempts"]) == ("up", 1, 1)
    assert call["model"].endswith("-a")
    assert "last_failure" not in call


def test_a_synchronous_job_is_one_span_that_succeeds_without_a_status_upsert() -> None:
    # Started eagerly, listed as running from its start, run in one workflow task; the close event alone
    # says how it ended.
    types = event_types("chat")
    assert types.count("WORKFLOW_TASK_COMPLETED") == 1
    assert "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES" not in types

    trace = trace_of("chat")

    assert trace.status == "succeeded"
    assert (trace.root.kind, trace.root.status) == ("workflow", "ok")
    assert outline(trace.root) == [
        ("local_activity", "preflight", "ok"),
        ("local_activity", f"call {deployment(trace, 'a')}", "ok"),
        ("local_activity", "postflight", "ok"),
    ]
    assert [child.children for child in trace.root.children] == [[], [], []]


def test_a_job_started_running_reads_running_until_it_closes() -> None:
    events = history("chat")["events"][:-1]

    trace = build_trace("job_chat", {"events": events})

    assert trace.status == "running"
    assert trace.root.status == "running" and trace.root.end_time is None


def test_a_locally_retried_call_counts_its_attempts() -> None:
    [call] = calls(trace_of("retry"))

    assert (call.kind, call.status, call.attributes["attempts"]) == ("local_activity", "ok", 3)


def test_a_locally_retried_call_lasts_as_long_as_its_attempts_and_backoffs() -> None:
    [call] = calls(trace_of("retry"))

    assert call.end_time is not None
    backoffs = FAST_RETRY["initial_interval_s"] * (1 + FAST_RETRY["backoff"])
    assert call.end_time - call.start_time >= timedelta(seconds=backoffs)


def test_retried_activity_shows_its_attempts_and_the_failure_before_success() -> None:
    [call] = calls(trace_of("retry_activity"))

    assert (call.kind, call.status) == ("activity", "ok")
    assert call.attributes["attempts"] == 3
    assert call.attributes["last_failure"]["type"] == "upstream_error"
    assert "HTTP 500" in call.attributes["last_failure"]["message"]


@pytest.mark.parametrize(
    ("name", "call_kind", "provider"),
    [("reroute", "local_activity", "up"), ("reroute_activity", "activity", "up-activity")],
)
def test_reroute_sits_between_the_two_deployments(name: str, call_kind: str, provider: str) -> None:
    trace = trace_of(name)

    a, b = deployment(trace, "a", provider), deployment(trace, "b", provider)
    assert [(kind, span) for kind, span, _ in outline(trace.root)] == [
        ("local_activity", "preflight"),
        (call_kind, f"call {a}"),
        ("reroute", f"reroute {a} → {b}"),
        (call_kind, f"call {b}"),
        ("local_activity", "postflight"),
    ]
    first, second = calls(trace)
    assert first.attributes["model"].endswith("-a") and second.attributes["model"].endswith("-b")
    assert first.status == "error"
    assert first.attributes["attempts"] == 3
    assert first.attributes["last_failure"]["type"] == "upstream_error"
    if call_kind == "activity":  # a local activity's marker records no retry state
        assert first.attributes["retry_state"] == "maximum_attempts_reached"
    assert second.status == "ok"
    reroute = trace.root.children[2].attributes
    assert reroute["from_deployment"] == f"{provider}/{first.attributes['model']}"
    assert reroute["to_deployment"] == f"{provider}/{second.attributes['model']}"


def test_park_holds_its_timer_and_repair_then_the_call_succeeds() -> None:
    trace = trace_of("park_repair")

    call = f"call {deployment(trace, 'a')}"
    assert steps(trace) == [
        ("local_activity", "preflight", "ok"),
        ("local_activity", call, "error"),
        ("park", "park", "ok"),
        ("local_activity", call, "ok"),
        ("local_activity", "postflight", "ok"),
    ]
    assert [name for _, name, _ in outline(trace.root)].count("record_events") == 1
    park = park_of(trace)
    assert park.attributes["last_failure"]["type"] == "upstream_error"
    assert outline(park) == [("timer", "timer park", "cancelled"), ("update", "repair retry", "ok")]
    repair = park.children[1].attributes
    assert (repair["action"], repair["outcome"]) == ("retry", "success")
    retried = calls(trace)[1]
    # The same deployment again, after a repair: not a reroute.
    assert not [span for span in walk(trace.root) if span.kind == "reroute"]
    assert calls(trace)[0].attributes["model"] == retried.attributes["model"]


def test_a_repaired_call_starts_after_the_park_and_its_repair() -> None:
    trace = trace_of("park_repair")

    park = park_of(trace)
    [_, repair] = park.children
    retried = calls(trace)[1]
    assert park.end_time is not None and repair.end_time is not None
    assert repair.end_time <= park.end_time <= retried.start_time


def test_repair_reroute_plans_again_on_the_other_route() -> None:
    trace = trace_of("park_reroute")

    park = park_of(trace)
    repair = park.children[-1].attributes
    assert (repair["action"], repair["model"]) == ("reroute", "other")
    assert park.children[-1].name == "repair reroute"
    names = [name for _, name, _ in steps(trace)]
    assert names[names.index("park") + 1 :] == ["preflight", f"call {deployment(trace, 'c')}", "postflight"]
    assert calls(trace)[-1].attributes["model"].endswith("-c")
    assert trace.status == "succeeded"


def test_non_retryable_failure_carries_its_code_on_the_root() -> None:
    trace = trace_of("non_retryable")

    assert trace.status == "failed"
    assert trace.root.status == "error"
    assert trace.root.attributes["failure_type"] == "bad_request"
    assert "HTTP 400" in trace.root.attributes["failure_message"]
    [call] = calls(trace)
    assert call.attributes["attempts"] == 1  # of 3 allowed: a bad request is not retried
    assert call.attributes["last_failure"]["type"] == "bad_request"
    assert not [span for span in walk(trace.root) if span.kind == "park"]


def test_cancelled_job_shows_the_request_and_a_cancelled_park() -> None:
    trace = trace_of("cancelled")

    assert trace.status == "cancelled"
    assert trace.root.status == "cancelled"
    [park] = [span for span in trace.root.children if span.kind == "park"]
    [cancel] = [span for span in trace.root.children if span.kind == "cancel"]
    assert park.status == "cancelled"
    assert outline(park) == [("timer", "timer park", "cancelled")]
    assert park.start_time <= cancel.start_time
    assert cancel.end_time == trace.root.end_time


def test_a_running_job_has_open_spans() -> None:
    events = history("park_repair")["events"]
    parked_at = next(i for i, e in enumerate(events) if e["eventType"] == "EVENT_TYPE_TIMER_STARTED")

    trace = build_trace("job_running", {"events": events[: parked_at + 1]})

    assert trace.status == "parked"
    assert trace.root.status == "running" and trace.root.end_time is None
    park = park_of(trace)
    assert (park.status, park.end_time) == ("running", None)


@pytest.mark.parametrize("name", ["reroute_activity", "park_repair"])
def test_legacy_camel_case_event_types_read_the_same(name: str) -> None:
    events = history(name)["events"]
    for event in events:
        type_name = event["eventType"].removeprefix("EVENT_TYPE_")
        event["eventType"] = re.sub(r"_?([A-Z])([A-Z]*)", lambda m: m[1] + m[2].lower(), type_name)

    assert build_trace(f"job_{name}", {"events": events}) == trace_of(name)


def test_history_without_a_start_is_refused() -> None:
    with pytest.raises(ValueError, match="WorkflowExecutionStarted"):
        build_trace("job_x", {"events": history("success")["events"][1:]})


def test_costs_land_on_the_billed_call() -> None:
    trace = trace_of("reroute")
    row = BilledCall(idempotency_key=cost_key("job_reroute", 2), input_tokens=9, output_tokens=2, cost_usd=0.25)

    attach_costs(trace, [row])

    failed, billed = calls(trace)
    assert "cost_usd" not in failed.attributes
    assert (billed.attributes["cost_usd"], billed.attributes["input_tokens"]) == (0.25, 9)
    assert trace.cost_usd == 0.25


def test_a_cache_hit_shows_the_answer_reused_and_no_call() -> None:
    trace = trace_of("cache_hit")
    row = BilledCall(idempotency_key=cost_key("job_cache_hit", 0), input_tokens=0, output_tokens=0, cost_usd=0.0)

    attach_costs(trace, [row.model_copy(update={"saved_usd": 0.003})])

    assert steps(trace) == [("local_activity", "preflight", "ok"), ("local_activity", "postflight", "ok")]
    hit = trace.root.children[0].attributes["cache_hit"]
    assert hit["method"] == "exact" and hit["job_id"].startswith("job_")
    assert (trace.status, trace.cost_usd, trace.saved_usd) == ("succeeded", 0.0, 0.003)


def test_the_preflight_span_names_the_features_a_job_ran_without() -> None:
    [preflight] = [span for span in trace_of("chat").root.children if span.name == "preflight"]

    # Recorded with the defaults: cost tracking and similarity on, the response cache off.
    assert preflight.attributes["skipped"] == ["enable_response_cache"]
    assert "cache_hit" not in preflight.attributes


def test_an_unpriced_call_is_counted_apart_never_as_free() -> None:
    trace = trace_of("success")
    row = BilledCall(idempotency_key=cost_key("job_success", 1), input_tokens=9, output_tokens=2, cost_usd=None)

    attach_costs(trace, [row])

    assert (trace.cost_usd, trace.unpriced_calls) == (0.0, 1)
    assert calls(trace)[0].attributes["cost_usd"] is None
