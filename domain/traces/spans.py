"""The event-type dispatch behind `build_trace`: each history event opens, updates or closes a span.

Spans open and close on events in history order. A call_model activity gets its deployment and call
sequence from its (pydantic JSON) input; a change of deployment within one route plan is a reroute span; a
park span lasts from the `parked` status upsert to the next status, and holds the timer and the repair
Update that happened while the job waited; a child workflow is a span from its initiation to its close
(`build_trace` fills it from the child's own history).

Span names say what happened at a glance (DESIGN.md, "Telemetry and exports"): `call <provider>/<model>`,
`reroute <from> → <to>`, `park`, `repair <action>`. Code that looks for a kind of span matches on `kind` and
`activity_type`, never on a name. What happened at a moment within a span — an attempt's end, a guardrail's
decision, a cache hit — is one of its `events`; the attributes keep the same facts for code that reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain.traces import history as h
from schemas import search_attributes as search_attrs
from schemas.contracts import call_seq_of_activity_id, deployment_summary, parse_deployment_summary
from schemas.jobs import JobStatus
from schemas.traces import Span, SpanEvent, SpanKind, SpanStatus

_CLOSES: dict[str, tuple[SpanStatus, JobStatus]] = {
    "WORKFLOW_EXECUTION_COMPLETED": ("ok", "succeeded"),
    "WORKFLOW_EXECUTION_CONTINUED_AS_NEW": ("ok", "succeeded"),
    "WORKFLOW_EXECUTION_FAILED": ("error", "failed"),
    "WORKFLOW_EXECUTION_TIMED_OUT": ("error", "failed"),
    "WORKFLOW_EXECUTION_TERMINATED": ("error", "failed"),
    "WORKFLOW_EXECUTION_CANCELED": ("cancelled", "cancelled"),
}
_ACTIVITY_CLOSES: dict[str, SpanStatus] = {
    "ACTIVITY_TASK_COMPLETED": "ok",
    "ACTIVITY_TASK_FAILED": "error",
    "ACTIVITY_TASK_TIMED_OUT": "error",
    "ACTIVITY_TASK_CANCELED": "cancelled",
}
_CHILD_CLOSES: dict[str, SpanStatus] = {
    "CHILD_WORKFLOW_EXECUTION_COMPLETED": "ok",
    "CHILD_WORKFLOW_EXECUTION_FAILED": "error",
    "CHILD_WORKFLOW_EXECUTION_TIMED_OUT": "error",
    "CHILD_WORKFLOW_EXECUTION_TERMINATED": "error",
    "CHILD_WORKFLOW_EXECUTION_CANCELED": "cancelled",
    "START_CHILD_WORKFLOW_EXECUTION_FAILED": "error",
}
_PARK_ENDS: dict[str, SpanStatus] = {"failed": "error", "cancelled": "cancelled"}
"""How a park ended, by the job status that followed it; a repair (back to running) is `ok`."""
_LOCAL_ACTIVITY_MARKER = "core_local_activity"


class SpanBuilder:
    """Feeds on history events one by one; `root` is the finished tree once every event went in."""

    def __init__(self) -> None:
        self.root: Span | None = None
        self.job_status: JobStatus = "queued"
        self._activities: dict[str, Span] = {}
        self._timers: dict[str, Span] = {}
        self._updates: dict[str, Span] = {}
        self._children: dict[str, Span] = {}
        self._park: Span | None = None
        self._cancel: Span | None = None
        self._last_call: Span | None = None
        self._last_deployment: tuple[str, str] | None = None
        """The deployment of the previous call of the current plan; a new plan or a park forgets it."""
        self._handlers: dict[str, Callable[[dict[str, Any], dict[str, Any], datetime], None]] = {
            "WORKFLOW_EXECUTION_STARTED": self._started,
            "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": self._upsert,
            "MARKER_RECORDED": self._marker,
            "ACTIVITY_TASK_SCHEDULED": self._activity_scheduled,
            "ACTIVITY_TASK_STARTED": self._activity_started,
            "TIMER_STARTED": self._timer_started,
            "TIMER_FIRED": self._timer_closed,
            "TIMER_CANCELED": self._timer_closed,
            "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": self._update_accepted,
            "WORKFLOW_EXECUTION_UPDATE_COMPLETED": self._update_completed,
            "WORKFLOW_EXECUTION_CANCEL_REQUESTED": self._cancel_requested,
            "START_CHILD_WORKFLOW_EXECUTION_INITIATED": self._child_initiated,
            "CHILD_WORKFLOW_EXECUTION_STARTED": self._child_started,
            **{name: self._child_closed for name in _CHILD_CLOSES},
            **{name: self._activity_closed for name in _ACTIVITY_CLOSES},
            **{name: self._closed for name in _CLOSES},
        }

    def add(self, event: dict[str, Any], at: datetime | None = None) -> None:
        """Feed one event; `at` is when it happened if not its own time (`history.event_times`)."""
        handler = self._handlers.get(h.event_type(event))
        if handler is not None and (self.root is not None or handler == self._started):
            handler(event, h.attributes(event), at or h.event_time(event))

    def _root(self) -> Span:
        # `add` dispatches nothing but the start event until the root exists.
        if self.root is None:
            raise ValueError("history event before WorkflowExecutionStarted")
        return self.root

    def _span(
        self,
        event: dict[str, Any],
        name: str,
        kind: SpanKind,
        at: datetime,
        *,
        parent: Span | None = None,
        status: SpanStatus = "running",
        end: datetime | None = None,
        **attributes: Any,
    ) -> Span:
        parent = parent or self._root()
        span_id = str(event.get("eventId")) + (f":{kind}" if kind == "reroute" else "")
        span = Span(
            span_id=span_id,
            parent_id=parent.span_id,
            name=name,
            kind=kind,
            start_time=at,
            end_time=end,
            status=status,
            attributes={k: v for k, v in attributes.items() if v is not None},
        )
        parent.children.append(span)
        return span

    def _started(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        name = (attrs.get("workflowType") or {}).get("name", "")
        self.root = Span(
            span_id=str(event.get("eventId")),
            parent_id=None,
            name=name,
            kind="workflow",
            start_time=at,
            end_time=None,
            status="running",
            attributes={
                "workflow_type": name,
                "task_queue": (attrs.get("taskQueue") or {}).get("name"),
                "model": h.search_attribute(attrs, search_attrs.MODEL.name),
            },
        )
        self.job_status = h.search_attribute(attrs, search_attrs.STATUS.name) or "queued"

    def _closed(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        root = self._root()
        root.status, self.job_status = _CLOSES[h.event_type(event)]
        root.end_time = at
        failure = h.failure_info(attrs.get("failure"))
        if failure is not None:
            root.attributes.update(failure_message=failure["message"], failure_type=failure["type"])
        if attrs.get("reason"):
            root.attributes["reason"] = attrs["reason"]
        if self._park is not None:
            self._park.end_time, self._park.status = at, root.status
        if self._cancel is not None:
            self._cancel.end_time, self._cancel.status = at, "ok"
        self._park = self._cancel = None

    def _upsert(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        status = h.search_attribute(attrs, search_attrs.STATUS.name)
        if status is None:
            return
        self.job_status = status
        if self._park is not None and status != "parked":
            self._park.end_time, self._park.status = at, _PARK_ENDS.get(status, "ok")
            self._park = None
        elif self._park is None and status == "parked":
            last_call = self._last_call.attributes if self._last_call is not None else {}
            self._park = self._span(event, "park", "park", at, last_failure=last_call.get("last_failure"))
            self._last_deployment = None

    def _marker(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        if attrs.get("markerName") != _LOCAL_ACTIVITY_MARKER:
            return
        data = h.first_payload((attrs.get("details") or {}).get("data"))
        data = data if isinstance(data, dict) else {}
        # A marker with a `backoff` ends attempts that outlasted a workflow task: a timer waits that long, then
        # the activity is scheduled again and records a marker of its own.
        # `complete_time` is not a clock reading (the task's start plus the last attempt's run time): the
        # activity ended by the marker's time as `event_times` gives it.
        completed = at
        scheduled = h.parse_time(data.get("original_schedule_time")) or completed
        name = str(data.get("activity_type") or "local_activity")
        failure = h.failure_info(attrs.get("failure"))
        fields: dict[str, Any] = {}
        if name == "call_model":  # a deployment with `call: local`: the deployment is in the summary
            provider, model = parse_deployment_summary(h.summary(event) or "") or ("", "")
            call_seq = call_seq_of_activity_id(str(data.get("activity_id") or ""))
            fields = {"provider": provider, "model": model, "call_seq": call_seq}
            self._enter_deployment(event, min(scheduled, completed), provider, model)
        span = self._span(
            event,
            _call_name(fields) if name == "call_model" else name,
            "local_activity",
            min(scheduled, completed),
            end=completed,
            status="ok" if failure is None else "error",
            activity_type=name,
            attempts=data.get("attempt"),
            last_failure=failure,
            backoff=data.get("backoff"),
            **fields,
        )
        span.events.extend(_attempt_ended(span))
        result = h.first_payload((attrs.get("details") or {}).get("result"))
        if name == "call_model":
            self._last_call = span
            _add_verdict(span, result)
        if name == "preflight":
            self._last_deployment = None
            _add_decision(span, result)

    def _activity_scheduled(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        name = (attrs.get("activityType") or {}).get("name", "")
        call = h.first_payload(attrs.get("input"))
        deployment = call.get("deployment") if isinstance(call, dict) else None
        fields: dict[str, Any] = {"activity_type": name, "activity_id": attrs.get("activityId")}
        if isinstance(deployment, dict) and isinstance(call, dict):
            fields.update(
                provider=deployment.get("provider"), model=deployment.get("model"), call_seq=call.get("call_seq")
            )
            self._enter_deployment(event, at, str(fields["provider"]), str(fields["model"]))
        span_name = _call_name(fields) if name == "call_model" else name
        span = self._span(event, span_name, "activity", at, summary=h.summary(event), **fields)
        self._activities[span.span_id] = span
        self._last_call = span

    def _enter_deployment(self, event: dict[str, Any], at: datetime, provider: str, model: str) -> None:
        """A call on another deployment than the previous call of the same plan is a reroute."""
        here = (provider, model)
        if self._last_deployment is not None and here != self._last_deployment:
            self._span(
                event,
                f"reroute {deployment_summary(*self._last_deployment)} → {deployment_summary(*here)}",
                "reroute",
                at,
                status="ok",
                end=at,
                from_deployment=deployment_summary(*self._last_deployment),
                to_deployment=deployment_summary(*here),
            )
        self._last_deployment = here

    def _activity_started(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        span = self._activities.get(str(attrs.get("scheduledEventId")))
        if span is not None:
            attempt = attrs.get("attempt", 1)
            span.attributes["attempts"] = attempt
            failure = h.failure_info(attrs.get("lastFailure"))
            if failure:
                span.attributes["last_failure"] = failure
            if attempt > 1:  # the server records a retried activity's start once, for its last attempt
                fields = {"attempt": attempt, "previous_failure": failure}
                span.events.append(_event(f"attempt {attempt} started", at, **fields))

    def _activity_closed(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        span = self._activities.pop(str(attrs.get("scheduledEventId")), None)
        if span is None:
            return
        span.end_time, span.status = at, _ACTIVITY_CLOSES[h.event_type(event)]
        span.attributes.setdefault("attempts", 1)
        if span.attributes.get("activity_type") == "call_model":
            _add_verdict(span, h.first_payload(attrs.get("result")))
        if failure := h.failure_info(attrs.get("failure")):
            span.attributes["last_failure"] = failure
        if attrs.get("retryState"):
            span.attributes["retry_state"] = h.enum_name(attrs["retryState"], "RETRY_STATE_")
        span.events.extend(_attempt_ended(span))

    def _timer_started(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        label = h.summary(event)
        timer_id = str(attrs.get("timerId"))
        self._timers[timer_id] = self._span(
            event,
            f"timer {label or timer_id}",
            "timer",
            at,
            parent=self._park,
            timer_id=timer_id,
            duration=attrs.get("startToFireTimeout"),
            summary=label,
        )

    def _timer_closed(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        span = self._timers.pop(str(attrs.get("timerId")), None)
        if span is not None:
            fired = h.event_type(event) == "TIMER_FIRED"
            span.end_time, span.status = at, "ok" if fired else "cancelled"
            span.attributes["fired"] = fired

    def _update_accepted(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        request = attrs.get("acceptedRequest") or {}
        update_id = str((request.get("meta") or {}).get("updateId") or attrs.get("protocolInstanceId"))
        update_input = request.get("input") or {}
        args = h.first_payload(update_input.get("args"))
        name = str(update_input.get("name", "update"))
        span = self._span(event, name, "update", at, parent=self._park, update_id=update_id, update_name=name)
        if isinstance(args, dict):  # the repair's action and model
            span.attributes.update({k: v for k, v in args.items() if isinstance(v, str | int | float)})
            if name == "repair" and args.get("action"):
                span.name = f"repair {args['action']}"
        self._updates[update_id] = span

    def _update_completed(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        span = self._updates.pop(str((attrs.get("meta") or {}).get("updateId")), None)
        if span is None:
            return
        outcome = attrs.get("outcome") or {}
        span.end_time = at
        if "failure" in outcome:
            span.status = "error"
            span.attributes.update(outcome="failure", failure=h.failure_info(outcome["failure"]))
        else:
            span.status = "ok"
            span.attributes.update(outcome="success", result=h.first_payload(outcome.get("success")))

    def _cancel_requested(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        if self._cancel is None:
            self._cancel = self._span(event, "cancel requested", "cancel", at, reason=attrs.get("cause") or None)

    def _child_initiated(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        workflow_type = (attrs.get("workflowType") or {}).get("name", "")
        self._children[str(event.get("eventId"))] = self._span(
            event,
            workflow_type or "child workflow",
            "child_workflow",
            at,
            workflow_type=workflow_type,
            workflow_id=attrs.get("workflowId"),
            task_queue=(attrs.get("taskQueue") or {}).get("name"),
        )

    def _child_started(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        span = self._children.get(str(attrs.get("initiatedEventId")))
        if span is not None:
            span.attributes["run_id"] = (attrs.get("workflowExecution") or {}).get("runId")

    def _child_closed(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        span = self._children.pop(str(attrs.get("initiatedEventId")), None)
        if span is None:
            return
        span.end_time, span.status = at, _CHILD_CLOSES[h.event_type(event)]
        if failure := h.failure_info(attrs.get("failure")):
            span.attributes["failure"] = failure
        if attrs.get("cause"):  # the child could not start (its workflow id is taken)
            span.attributes["failure"] = {
                "message": h.enum_name(attrs["cause"], "START_CHILD_WORKFLOW_EXECUTION_FAILED_CAUSE_"),
                "type": "start_failed",
            }
        if attrs.get("retryState"):
            span.attributes["retry_state"] = h.enum_name(attrs["retryState"], "RETRY_STATE_")


def _call_name(fields: dict[str, Any]) -> str:
    """`call <provider>/<model>`: which deployment the call tried."""
    return f"call {deployment_summary(str(fields.get('provider') or '?'), str(fields.get('model') or '?'))}"


def _event(name: str, at: datetime, **attributes: Any) -> SpanEvent:
    return SpanEvent(name=name, time=at, attributes={k: v for k, v in attributes.items() if v is not None})


def _attempt_ended(span: Span) -> list[SpanEvent]:
    """How the last attempt of a retried or failed activity ended, at the span's end: history records when
    the last attempt ran, not when the earlier ones did, so they are counted (`failed_attempts`), not placed."""
    attempt = span.attributes.get("attempts") or 1
    if span.end_time is None or (attempt == 1 and span.status == "ok"):
        return []
    failure = span.attributes.get("last_failure") if span.status == "error" else None
    outcome = {"ok": "succeeded", "error": "failed", "cancelled": "cancelled"}.get(span.status, span.status)
    return [
        _event(
            f"attempt {attempt} {outcome}",
            span.end_time,
            attempt=attempt,
            failed_attempts=attempt - 1 if span.status == "ok" else attempt,
            failure=failure,
            retry_state=span.attributes.get("retry_state"),
        )
    ]


def _add_decision(span: Span, plan: Any) -> None:
    """Preflight's decision as attributes, and its moments — a cache hit, a policy's refusal, a guardrail that
    fired on the input — as events at the preflight's end, when the decision was made."""
    found = _decision(plan)
    span.attributes.update(found)
    at = span.end_time or span.start_time
    if cache_hit := found.get("cache_hit"):
        span.events.append(_event("cache hit", at, **cache_hit))
    policy = found.get("policy") or {}
    if policy.get("abuse_action"):
        span.events.append(_event(f"abuse {policy['abuse_action']}", at, score=policy.get("abuse_score")))
    if policy.get("refusal"):
        span.events.append(
            _event(
                "policy refused", at, policy_id=policy.get("id"), refusal=policy["refusal"], reasons=policy["reasons"]
            )
        )
    span.events.extend(_guardrail_event(decision, at) for decision in found.get("guardrails") or [])


def _add_verdict(span: Span, output: Any) -> None:
    """The output guardrails' verdict as attributes, and each guardrail that fired as an event at the call's end."""
    found = _verdict(output)
    span.attributes.update(found)
    at = span.end_time or span.start_time
    span.events.extend(_guardrail_event(decision, at) for decision in found.get("output_guardrails") or [])
    if found.get("output_refusal"):
        span.events.append(_event("output refused", at, refusal=found["output_refusal"]))


def _guardrail_event(decision: Any, at: datetime) -> SpanEvent:
    """`guardrail <name> <action>` (e.g. `guardrail pii redact`), with what it found (kinds, never the text)."""
    if not isinstance(decision, dict):
        return _event("guardrail", at)
    return _event(
        f"guardrail {decision.get('guardrail')} {decision.get('action')}",
        at,
        guardrail=decision.get("guardrail"),
        stage=decision.get("stage"),
        action=decision.get("action"),
        kinds=decision.get("kinds") or None,
        findings=len(decision.get("findings") or []),
        score=decision.get("score"),
    )


def _decision(plan: Any) -> dict[str, Any]:
    """What a person needs of preflight's decision: the features the job ran without (flags off), the cached
    answer it reused instead of calling a provider, and what its policy decided and why."""
    if not isinstance(plan, dict):
        return {}
    found: dict[str, Any] = {}
    flags = plan.get("flags") or {}
    skipped = sorted(key for key, on in flags.items() if on is False) if isinstance(flags, dict) else []
    cached = plan.get("cached")
    if isinstance(cached, dict):
        found["cache_hit"] = {key: cached.get(key) for key in ("job_id", "method", "score", "saved_usd")}
    decision = plan.get("decision")
    if isinstance(decision, dict):
        skipped = sorted({*skipped, *(decision.get("skipped") or [])})
        found["policy"] = {
            "id": decision.get("policy_id"),
            "version": decision.get("policy_version"),
            "refusal": decision.get("refusal"),
            "reasons": decision.get("reasons") or [],
            "checked": decision.get("checked") or [],
            "estimated_cost_usd": decision.get("estimated_cost_usd"),
            "budget_reserved_usd": decision.get("budget_reserved_usd"),
            "abuse_score": decision.get("abuse_score"),
            "abuse_action": decision.get("abuse_action"),
        }
        if decision.get("guardrails"):
            found["guardrails"] = decision["guardrails"]
    if skipped:
        found["skipped"] = skipped
    return found


def _verdict(output: Any) -> dict[str, Any]:
    """The output guardrails' verdict on a call's answer: what fired, and a refusal."""
    verdict = output.get("verdict") if isinstance(output, dict) else None
    if not isinstance(verdict, dict):
        return {}
    return {"output_guardrails": verdict.get("guardrails") or [], "output_refusal": verdict.get("refusal")}
