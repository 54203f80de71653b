"""Traces: `build_trace` on recorded job histories, and costs attached to the billed call."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from domain.traces.build import attach_costs, build_trace, walk
from schemas.contracts import cost_key
from schemas.traces import BilledCall, Span, Trace
from tests.support.common import HISTORIES


def history(name: str) -> dict[str, Any]:
    return json.loads((HISTORIES / f"{name}.json").read_text())


def trace_of(name: str) -> Trace:
    return build_trace(f"job_{name}", history(name))


def outline(span: Span) -> list[tuple[str, str, str]]:
    return [(child.kind, child.name, child.status) for child in span.children]


def calls(trace: Trace) -> list[Span]:
    return [span for span in walk(trace.root) if span.name == "call_model"]


@pytest.mark.parametrize("name", sorted(p.stem for p in HISTORIES.glob("*.json")))
def test_every_span_is_closed_ordered_and_linked(name: str) -> None:
    trace = trace_of(name)

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
    trace = trace_of("success")

    assert trace.status == "succeeded"
    assert trace.root.status == "ok"
    assert outline(trace.root) == [
        ("local_activity", "preflight", "ok"),
        ("activity", "call_model", "ok"),
        ("local_activity", "postflight", "ok"),
    ]
    call = calls(trace)[0].attributes
    assert (call["provider"], call["call_seq"], call["attempts"]) == ("up", 1, 1)
    assert "last_failure" not in call


def test_retried_call_shows_its_attempts_and_the_failure_before_success() -> None:
    [call] = calls(trace_of("retry"))

    assert call.status == "ok"
    assert call.attributes["attempts"] == 3
    assert call.attributes["last_failure"]["type"] == "upstream_error"
    assert "HTTP 500" in call.attributes["last_failure"]["message"]


def test_reroute_sits_between_the_two_deployments() -> None:
    trace = trace_of("reroute")

    assert [(kind, name) for kind, name, _ in outline(trace.root)] == [
        ("local_activity", "preflight"),
        ("activity", "call_model"),
        ("reroute", "reroute"),
        ("activity", "call_model"),
        ("local_activity", "postflight"),
    ]
    first, second = calls(trace)
    assert first.attributes["model"].endswith("-a") and second.attributes["model"].endswith("-b")
    assert first.status == "error"
    assert first.attributes["retry_state"] == "maximum_attempts_reached"
    assert first.attributes["attempts"] == 3
    assert second.status == "ok"
    reroute = trace.root.children[2].attributes
    assert reroute["from_deployment"] == f"up/{first.attributes['model']}"
    assert reroute["to_deployment"] == f"up/{second.attributes['model']}"


def test_park_holds_its_timer_and_repair_then_the_call_succeeds() -> None:
    trace = trace_of("park_repair")

    assert outline(trace.root) == [
        ("local_activity", "preflight", "ok"),
        ("activity", "call_model", "error"),
        ("local_activity", "record_events", "ok"),
        ("park", "parked", "ok"),
        ("activity", "call_model", "ok"),
        ("local_activity", "postflight", "ok"),
    ]
    park = trace.root.children[3]
    assert park.attributes["last_failure"]["type"] == "upstream_error"
    assert outline(park) == [("timer", "park", "cancelled"), ("update", "repair", "ok")]
    repair = park.children[1].attributes
    assert (repair["action"], repair["outcome"]) == ("retry", "success")
    retried = trace.root.children[4]
    assert park.end_time is not None and park.end_time <= retried.start_time
    # The same deployment again, after a repair: not a reroute.
    assert not [span for span in walk(trace.root) if span.kind == "reroute"]
    assert calls(trace)[0].attributes["model"] == retried.attributes["model"]


def test_repair_reroute_plans_again_on_the_other_route() -> None:
    trace = trace_of("park_reroute")

    park = next(span for span in trace.root.children if span.kind == "park")
    repair = park.children[-1].attributes
    assert (repair["action"], repair["model"]) == ("reroute", "other")
    after_park = [c.name for c in trace.root.children if c.start_time >= park.start_time and c is not park]
    assert after_park == ["preflight", "call_model", "postflight"]
    assert calls(trace)[-1].attributes["model"].endswith("-c")
    assert trace.status == "succeeded"


def test_non_retryable_failure_carries_its_code_on_the_root() -> None:
    trace = trace_of("non_retryable")

    assert trace.status == "failed"
    assert trace.root.status == "error"
    assert trace.root.attributes["failure_type"] == "bad_request"
    assert "HTTP 400" in trace.root.attributes["failure_message"]
    [call] = calls(trace)
    assert call.attributes["attempts"] == 1
    assert call.attributes["retry_state"] == "non_retryable_failure"
    assert call.attributes["last_failure"]["type"] == "bad_request"
    assert not [span for span in walk(trace.root) if span.kind == "park"]


def test_cancelled_job_shows_the_request_and_a_cancelled_park() -> None:
    trace = trace_of("cancelled")

    assert trace.status == "cancelled"
    assert trace.root.status == "cancelled"
    [park] = [span for span in trace.root.children if span.kind == "park"]
    [cancel] = [span for span in trace.root.children if span.kind == "cancel"]
    assert park.status == "cancelled"
    assert outline(park) == [("timer", "park", "cancelled")]
    assert park.start_time <= cancel.start_time
    assert cancel.end_time == trace.root.end_time


def test_a_running_job_has_open_spans() -> None:
    events = history("park_repair")["events"]
    parked_at = next(i for i, e in enumerate(events) if e["eventType"] == "EVENT_TYPE_TIMER_STARTED")

    trace = build_trace("job_running", {"events": events[: parked_at + 1]})

    assert trace.status == "parked"
    assert trace.root.status == "running" and trace.root.end_time is None
    park = trace.root.children[-1]
    assert (park.kind, park.status, park.end_time) == ("park", "running", None)


def test_legacy_camel_case_event_types_read_the_same() -> None:
    events = history("reroute")["events"]
    for event in events:
        name = event["eventType"].removeprefix("EVENT_TYPE_")
        event["eventType"] = re.sub(r"_?([A-Z])([A-Z]*)", lambda m: m[1] + m[2].lower(), name)

    assert build_trace("job_reroute", {"events": events}) == trace_of("reroute").model_copy(
        update={"job_id": "job_reroute"}
    )


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
