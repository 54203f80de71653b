"""A finished job's model calls, read from its workflow history, as the Langfuse sink reports them.

Each call is what the workflow sent to one deployment and what came back: the messages after the policy's
redaction, never the prompt of the job's start input when they differ. A call that ran as an activity carries
its messages in its input; a local call's input is not recorded, so its messages are those the workflow held
then: the start input's until a preflight decision redacts them (`LLMJobWorkflow._apply` does the same).
The answer in history is already redacted by the output guardrails, which run inside the call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from domain.traces import history as h
from schemas.contracts import call_seq_of_activity_id, parse_deployment_summary

_ACTIVITY_CLOSES = {
    "ACTIVITY_TASK_COMPLETED",
    "ACTIVITY_TASK_FAILED",
    "ACTIVITY_TASK_TIMED_OUT",
    "ACTIVITY_TASK_CANCELED",
}
_JOB_CLOSES = {
    "WORKFLOW_EXECUTION_COMPLETED": "succeeded",
    "WORKFLOW_EXECUTION_FAILED": "failed",
    "WORKFLOW_EXECUTION_TIMED_OUT": "failed",
    "WORKFLOW_EXECUTION_TERMINATED": "failed",
    "WORKFLOW_EXECUTION_CANCELED": "cancelled",
}
_LOCAL_ACTIVITY_MARKER = "core_local_activity"
_DECISION_REVISION = 4
"""The job revision from which the workflow follows preflight's decision (redaction, `max_tokens`)."""
ScalarParam = str | int | float | bool


@dataclass(frozen=True)
class ModelCall:
    """One deployment the job called: a Langfuse generation."""

    call_seq: int
    provider: str
    model: str
    parameters: dict[str, ScalarParam]
    """The parameters sent (unset ones left out); a structured one (tools, response_format) as JSON text."""
    messages: list[dict[str, Any]]
    """As sent: redacted when the policy redacted them."""
    started_at: datetime
    ended_at: datetime | None = None
    output: dict[str, Any] | None = None
    """The answer's message (its first choice), the whole answer when it has several choices or none."""
    usage: dict[str, int] | None = None
    """`CallModelOutput.usage` of the call that answered; None for a call that failed."""
    cost_usd: float | None = None
    """What postflight billed for this call; None when unpriced, or for a call not billed."""
    attempts: int = 1
    error: str | None = None
    """Why the call failed (its last attempt's failure); None for a call that answered."""


@dataclass(frozen=True)
class JobCalls:
    """A finished job as Langfuse shows it: one trace, a generation per call."""

    job_id: str
    tenant_id: str
    route: str
    """The model alias the app asked for (the route), not a deployment."""
    status: str
    """`succeeded`, `failed` or `cancelled`; `running` for a history that has not closed."""
    started_at: datetime
    ended_at: datetime | None
    calls: list[ModelCall] = field(default_factory=list)
    output: dict[str, Any] | None = None
    """The job's answer (as the last call's `output`); None when it failed."""
    error_code: str | None = None
    error_message: str | None = None
    cache_hit: bool = False
    """The answer came from the response cache: no call was made."""
    metadata: dict[str, str] = field(default_factory=dict)
    """`JobCreate.metadata`: the app's own labels."""


def job_calls(job_id: str, history: dict[str, Any]) -> JobCalls:
    """The job and its calls from `{"events": [...]}`; a history without a start event raises ValueError.

    Never raises on a payload it cannot read (an encrypted one, an older revision's): the call shows less.
    """
    reader = _Reader(job_id)
    events = history.get("events") or []
    for event, at in zip(events, h.event_times(events), strict=True):
        reader.add(event, at)
    return reader.result()


class _Reader:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.job: JobCalls | None = None
        self.revision = 0
        self.messages: list[dict[str, Any]] = []
        """What the workflow would send now (`LLMJobWorkflow._messages`)."""
        self.params: dict[str, Any] = {}
        self.calls: dict[int, ModelCall] = {}
        self.scheduled: dict[str, int] = {}
        """Activity call_model scheduled event id → call_seq."""

    def result(self) -> JobCalls:
        if self.job is None:
            raise ValueError(f"history of {self.job_id} has no WorkflowExecutionStarted event")
        calls = [self.calls[seq] for seq in sorted(self.calls)]
        output = self.job.output
        if output is None and self.job.status == "succeeded" and calls:
            output = calls[-1].output
        return replace(self.job, calls=calls, output=output)

    def add(self, event: dict[str, Any], at: datetime) -> None:
        kind = h.event_type(event)
        attrs = h.attributes(event)
        if kind == "WORKFLOW_EXECUTION_STARTED":
            self._started(attrs, at)
        elif self.job is None:
            return
        elif kind == "MARKER_RECORDED" and attrs.get("markerName") == _LOCAL_ACTIVITY_MARKER:
            self._marker(event, attrs, at)
        elif kind == "ACTIVITY_TASK_SCHEDULED":
            self._scheduled(event, attrs, at)
        elif kind == "ACTIVITY_TASK_STARTED":
            self._update(attrs, attempts=int(attrs.get("attempt") or 1))
        elif kind in _ACTIVITY_CLOSES:
            self._activity_closed(kind, attrs, at)
        elif kind in _JOB_CLOSES:
            self._closed(kind, attrs, at)

    def _started(self, attrs: dict[str, Any], at: datetime) -> None:
        start = h.first_payload(attrs.get("input"))
        start = start if isinstance(start, dict) else {}
        self.revision = int(start.get("revision") or 1)
        self.messages = _messages(start.get("messages"))
        self.params = dict(start.get("params") or {})
        metadata = start.get("metadata")
        self.job = JobCalls(
            job_id=self.job_id,
            tenant_id=str(start.get("tenant_id") or ""),
            route=str(start.get("model") or ""),
            status="running",
            started_at=at,
            ended_at=None,
            metadata={str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
        )

    def _marker(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        details = attrs.get("details") or {}
        data = h.first_payload(details.get("data"))
        data = data if isinstance(data, dict) else {}
        result = h.first_payload(details.get("result"))
        name = data.get("activity_type")
        if name == "preflight" and isinstance(result, dict):
            self._preflight(result)
        elif name == "postflight" and isinstance(result, dict) and self.calls:
            # Postflight bills the call that answered: the last one.
            last = max(self.calls)
            cost = result.get("cost_usd")
            self.calls[last] = replace(self.calls[last], cost_usd=float(cost) if cost is not None else None)
        elif name == "call_model":
            call_seq = call_seq_of_activity_id(str(data.get("activity_id") or "")) or len(self.calls) + 1
            provider, model = parse_deployment_summary(h.summary(event) or "") or ("", "")
            scheduled = h.parse_time(data.get("original_schedule_time")) or at
            self.calls[call_seq] = ModelCall(
                call_seq=call_seq,
                provider=provider,
                model=model,
                parameters=_parameters(self.params),
                messages=self.messages,
                started_at=min(scheduled, at),
                attempts=int(data.get("attempt") or 1),
            )
            self._finish_call(call_seq, at, result, attrs.get("failure"))

    def _preflight(self, plan: dict[str, Any]) -> None:
        if plan.get("cached") is not None and self.job is not None:
            self.job = replace(self.job, cache_hit=True)
        decision = plan.get("decision")
        if not isinstance(decision, dict) or self.revision < _DECISION_REVISION:
            return
        if decision.get("redacted_messages") is not None:
            self.messages = _messages(decision["redacted_messages"])
        if decision.get("max_tokens") is not None:
            self.params = {**self.params, "max_tokens": decision["max_tokens"]}

    def _scheduled(self, event: dict[str, Any], attrs: dict[str, Any], at: datetime) -> None:
        call = h.first_payload(attrs.get("input"))
        if (attrs.get("activityType") or {}).get("name") != "call_model" or not isinstance(call, dict):
            return
        deployment = call.get("deployment") or {}
        call_seq = int(call.get("call_seq") or len(self.calls) + 1)
        self.scheduled[str(event.get("eventId"))] = call_seq
        self.calls[call_seq] = ModelCall(
            call_seq=call_seq,
            provider=str(deployment.get("provider") or ""),
            model=str(deployment.get("model") or ""),
            parameters=_parameters(call.get("params") or {}),
            messages=_messages(call.get("messages")),
            started_at=at,
        )

    def _update(self, attrs: dict[str, Any], **changes: Any) -> None:
        call_seq = self.scheduled.get(str(attrs.get("scheduledEventId")))
        if call_seq is not None:
            self.calls[call_seq] = replace(self.calls[call_seq], **changes)

    def _activity_closed(self, kind: str, attrs: dict[str, Any], at: datetime) -> None:
        call_seq = self.scheduled.pop(str(attrs.get("scheduledEventId")), None)
        if call_seq is None:
            return
        failure = attrs.get("failure")
        if kind == "ACTIVITY_TASK_CANCELED":
            failure = failure or {"message": "cancelled"}
        self._finish_call(call_seq, at, h.first_payload(attrs.get("result")), failure)

    def _finish_call(self, call_seq: int, at: datetime, result: Any, failure: Any) -> None:
        changes: dict[str, Any] = {"ended_at": at}
        info = h.failure_info(failure)
        if info is not None:
            changes["error"] = ": ".join(part for part in (info["type"], info["message"]) if part)
        elif isinstance(result, dict):
            # Revision 1 recorded the answer's text beside the usage rather than a whole `answer`.
            changes["output"] = _answer_output(result.get("answer", result))
            changes["usage"] = _usage(result.get("usage"))
            changes["attempts"] = int(result.get("attempt") or self.calls[call_seq].attempts)
        self.calls[call_seq] = replace(self.calls[call_seq], **changes)

    def _closed(self, kind: str, attrs: dict[str, Any], at: datetime) -> None:
        assert self.job is not None  # `add` dispatches nothing else before the start event
        changes: dict[str, Any] = {"status": _JOB_CLOSES[kind], "ended_at": at}
        state = h.first_payload(attrs.get("result"))
        if isinstance(state, dict) and state.get("result") is not None:
            changes["output"] = _answer_output(state["result"])
        info = h.failure_info(attrs.get("failure"))
        if info is not None:
            changes.update(error_code=info["type"], error_message=info["message"])
        elif kind == "WORKFLOW_EXECUTION_CANCELED":
            changes.update(error_code="cancelled", error_message="the job was cancelled")
        self.job = replace(self.job, **changes)


def _messages(value: Any) -> list[dict[str, Any]]:
    """Chat messages without their unset fields (history spells them `null`)."""
    if not isinstance(value, list):
        return []
    return [{k: v for k, v in m.items() if v is not None} for m in value if isinstance(m, dict)]


def _parameters(params: dict[str, Any]) -> dict[str, ScalarParam]:
    """Langfuse takes scalar model parameters: structured ones (tools, response_format) go as JSON text."""
    found: dict[str, ScalarParam] = {}
    for key, value in params.items():
        if value is None:
            continue
        found[key] = value if isinstance(value, str | int | float | bool) else json.dumps(value, sort_keys=True)
    return found


def _answer_output(answer: Any) -> dict[str, Any] | None:
    if not isinstance(answer, dict):
        return None
    choices = answer.get("choices") or []
    if len(choices) == 1 and isinstance(choices[0], dict) and isinstance(choices[0].get("message"), dict):
        return {k: v for k, v in choices[0]["message"].items() if v is not None}
    if "content" in answer:  # revision 1's `{content, finish_reason}`
        return {"role": "assistant", "content": answer["content"]}
    if answer.get("embeddings") is not None:
        # The vectors are the answer's bulk and say nothing to a reader of the trace.
        return {"embeddings": len(answer["embeddings"])}
    return answer


def _usage(usage: Any) -> dict[str, int] | None:
    """Langfuse's usage keys: `input`, `output`, `total`, and the details OpenAI reports when there are any."""
    if not isinstance(usage, dict):
        return None
    tokens = {key: int(usage.get(key) or 0) for key in ("input_tokens", "output_tokens")}
    found = {"input": tokens["input_tokens"], "output": tokens["output_tokens"], "total": sum(tokens.values())}
    details = {
        "input_cached_tokens": usage.get("cached_input_tokens"),
        "input_cache_creation": usage.get("cache_write_input_tokens"),
        "output_reasoning_tokens": usage.get("reasoning_tokens"),
    }
    found.update({key: int(value) for key, value in details.items() if value})
    return found
