"""Span events on recorded job histories: how attempts ended, guardrail decisions, cache hits and refusals;
and what `describe()` adds to an activity still pending."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from domain.traces.build import build_trace, is_call, walk
from domain.traces.pending import pending_activities
from schemas.traces import PendingActivity, Span, Trace
from tests.support.common import HISTORIES


def trace_of(name: str) -> Trace:
    return build_trace(f"job_{name}", json.loads((HISTORIES / f"{name}.json").read_text()))


def calls(trace: Trace) -> list[Span]:
    return [span for span in walk(trace.root) if is_call(span)]


def preflight(trace: Trace) -> Span:
    return next(span for span in trace.root.children if span.attributes.get("activity_type") == "preflight")


def events(span: Span) -> list[tuple[str, dict[str, Any]]]:
    return [(event.name, event.attributes) for event in span.events]


def test_a_call_that_worked_at_once_has_no_events() -> None:
    [call] = calls(trace_of("success"))

    assert call.events == []


def test_a_locally_retried_call_says_it_succeeded_after_two_failed_attempts() -> None:
    [call] = calls(trace_of("retry"))

    assert events(call) == [("attempt 3 succeeded", {"attempt": 3, "failed_attempts": 2})]
    assert call.events[0].time == call.end_time


def test_a_retried_activity_marks_when_its_last_attempt_started_and_what_failed_before() -> None:
    [call] = calls(trace_of("retry_activity"))

    started, succeeded = call.events
    assert started.name == "attempt 3 started"
    assert "HTTP 500" in started.attributes["previous_failure"]["message"]
    assert call.start_time < started.time < succeeded.time == call.end_time
    assert succeeded.name == "attempt 3 succeeded"


def test_the_call_given_up_on_before_a_reroute_ends_with_its_failure() -> None:
    failed, rerouted = calls(trace_of("reroute"))

    [(name, attributes)] = events(failed)
    assert name == "attempt 3 failed"
    assert attributes["failure"]["type"] == "upstream_error" and attributes["failed_attempts"] == 3
    assert rerouted.events == []


def test_guardrail_decisions_are_events_on_the_span_that_made_them_and_show_no_text() -> None:
    trace = trace_of("guarded")

    [(name, found)] = events(preflight(trace))
    assert name == "guardrail pii redact"
    assert found == {"guardrail": "pii", "stage": "input", "action": "redact", "kinds": ["email"], "findings": 1}
    [call] = calls(trace)
    assert events(call)[0][0] == "guardrail pii redact" and events(call)[0][1]["stage"] == "output"
    # The attributes the trace had keep their place beside the events.
    assert preflight(trace).attributes["guardrails"][0]["guardrail"] == "pii"


def test_a_refused_answer_shows_the_guardrail_and_the_refusal() -> None:
    [call] = calls(trace_of("output_refused"))

    assert [name for name, _ in events(call)] == ["guardrail json fail", "output refused"]
    assert events(call)[1][1]["refusal"]["code"] == "guardrail_blocked"


def test_a_cache_hit_is_an_event_naming_the_answer_reused() -> None:
    [(name, found)] = events(preflight(trace_of("cache_hit")))

    assert name == "cache hit"
    assert found["method"] == "exact" and found["job_id"].startswith("job_")


def test_a_policy_refusal_is_an_event_with_its_reasons() -> None:
    [(name, found)] = events(preflight(trace_of("policy_refused")))

    assert name == "policy refused"
    assert found["refusal"]["code"] == "model_not_allowed"
    assert found["reasons"]


def running_call_history() -> dict[str, Any]:
    """The `success` job cut where its call activity was scheduled: the call is still open."""
    raw = json.loads((HISTORIES / "success.json").read_text())
    events = raw["events"]
    scheduled = next(i for i, e in enumerate(events) if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")
    return {"events": events[: scheduled + 1]}


def test_a_pending_activity_tells_the_open_call_its_attempt_next_retry_and_last_failure() -> None:
    history = running_call_history()
    [call] = calls(build_trace("job_running", history))
    retry_at = datetime(2030, 1, 1, tzinfo=UTC)
    started_at = call.start_time.replace(year=2029)
    pending = PendingActivity(
        activity_id=str(call.attributes["activity_id"]),
        activity_type="call_model",
        state="scheduled",
        attempt=3,
        maximum_attempts=5,
        last_started_at=started_at,
        next_attempt_at=retry_at,
        last_failure={"message": "HTTP 503", "type": "upstream_error"},
    )
    elsewhere = pending.model_copy(update={"activity_id": "call-9", "attempt": 7})

    [call] = calls(build_trace("job_running", history, pending=[pending, elsewhere]))

    assert call.status == "running"
    assert call.attributes["attempts"] == 3 and call.attributes["next_attempt_at"] == retry_at.isoformat()
    assert call.attributes["last_failure"]["message"] == "HTTP 503"
    [event] = call.events
    assert (event.name, event.time) == ("attempt 3 started", started_at)


def test_pending_activities_read_from_describe_json() -> None:
    description = {
        "pendingActivities": [
            {
                "activityId": "call-1",
                "activityType": {"name": "call_model"},
                "state": "PENDING_ACTIVITY_STATE_SCHEDULED",
                "attempt": 2,
                "maximumAttempts": 0,
                "nextAttemptScheduleTime": "2030-01-01T00:00:00.123456789Z",
                "lastFailure": {"message": "boom", "applicationFailureInfo": {"type": "upstream_error"}},
            },
            {"activityType": {"name": "no id"}},
        ]
    }

    [pending] = pending_activities(description)

    assert (pending.activity_id, pending.state, pending.attempt, pending.maximum_attempts) == (
        "call-1",
        "scheduled",
        2,
        None,
    )
    assert pending.next_attempt_at == datetime(2030, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert pending.last_failure == {"message": "boom", "type": "upstream_error"}
    assert pending_activities({}) == []


def with_preflight_decision(name: str, **decision: Any) -> dict[str, Any]:
    """The recorded history with fields of its preflight decision replaced, as a policy would have set them."""
    raw = json.loads((HISTORIES / f"{name}.json").read_text())
    for event in raw["events"]:
        details = event.get("markerRecordedEventAttributes", {}).get("details", {})
        if (
            "result" not in details
            or '"preflight"' not in base64.b64decode(details["data"]["payloads"][0]["data"]).decode()
        ):
            continue
        payload = details["result"]["payloads"][0]
        plan = json.loads(base64.b64decode(payload["data"]))
        plan["decision"].update(decision)
        payload["data"] = base64.b64encode(json.dumps(plan).encode()).decode()
    return raw


def test_an_abuse_score_over_a_threshold_is_an_event() -> None:
    trace = build_trace("job_chat", with_preflight_decision("chat", abuse_score=0.93, abuse_action="flag"))

    [(name, found)] = events(preflight(trace))
    assert (name, found) == ("abuse flag", {"score": 0.93})
    assert preflight(trace).attributes["policy"]["abuse_action"] == "flag"


def test_a_preflight_that_decided_nothing_of_note_has_no_events() -> None:
    assert preflight(trace_of("chat")).events == []
