"""The trace page's waterfall: each span of a trace as a bar on the trace's time axis, with the marks that tell a
person what happened in it (attempts, failures, reroutes, parking, repairs, guardrail decisions, cache hits).

Pure: a trace and the instant an open span is drawn up to, in; rows out. Marks are keyed on a span's `kind` and
attributes, never on its name: names are for people and may change (`call <provider>/<model>`, `park`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from schemas.traces import Span, Trace

Tone = Literal["ok", "bad", "warn", "info", "gold"]
Role = Literal["job", "call", "preflight", "postflight", "step", "reroute", "park", "repair", "timer", "cancel"]

_ROLE_OF_KIND: dict[str, Role] = {
    "workflow": "job",
    "child_workflow": "job",
    "reroute": "reroute",
    "park": "park",
    "update": "repair",
    "timer": "timer",
    "cancel": "cancel",
}
_ROLE_OF_ACTIVITY: dict[str, Role] = {"call_model": "call", "preflight": "preflight", "postflight": "postflight"}
TICKS = (0.0, 25.0, 50.0, 75.0, 100.0)
"""Where the time axis is labelled, in % of the trace's length."""


@dataclass(frozen=True)
class Mark:
    """A short label beside a span: `tone` colours it (a failure reads red, a cache hit green)."""

    text: str
    tone: Tone


@dataclass(frozen=True)
class Row:
    span: Span
    index: int
    """Its place in the waterfall, top to bottom: names the row in the page (span ids hold `:`)."""
    depth: int
    role: Role
    left_pct: float
    """Where the bar starts, in % of the trace's length from its start."""
    width_pct: float
    """How long the bar is, in % of the trace's length; 0 for an instant (a reroute), which CSS still shows."""
    duration_s: float | None
    """None while the span is open."""
    marks: tuple[Mark, ...]

    @property
    def duration_text(self) -> str:
        return "still open" if self.duration_s is None else seconds(self.duration_s)


@dataclass(frozen=True)
class Tick:
    pct: float
    label: str


@dataclass(frozen=True)
class Waterfall:
    rows: list[Row]
    start: datetime
    end: datetime
    """The latest end of any span; `now` for a trace with open spans."""
    ticks: list[Tick]

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


def role_of(span: Span) -> Role:
    if span.kind in ("activity", "local_activity"):
        if span.attributes.get("provider") and span.attributes.get("model"):
            return "call"  # whatever the activity's type: a call of one deployment
        return _ROLE_OF_ACTIVITY.get(str(span.attributes.get("activity_type")), "step")
    return _ROLE_OF_KIND.get(span.kind, "step")


def deployment_of(span: Span) -> str | None:
    """`provider/model` of a call span."""
    provider, model = span.attributes.get("provider"), span.attributes.get("model")
    return f"{provider}/{model}" if provider and model and role_of(span) == "call" else None


def final_call(trace: Trace) -> Span | None:
    """The call that answered: the last call span that succeeded (None: the job never got an answer)."""
    answered = [span for span, _ in _depth_first(trace.root, 0) if role_of(span) == "call" and span.status == "ok"]
    return answered[-1] if answered else None


def waterfall(trace: Trace, *, now: datetime) -> Waterfall:
    """The trace's spans depth first, each placed on the axis from the root's start to the last end (`now` for
    spans still open)."""
    spans = _depth_first(trace.root, 0)
    start = trace.root.start_time
    end = max([start, *(span.end_time or now for span, _ in spans)])
    length = (end - start).total_seconds()
    answered = final_call(trace)
    rows = []
    for index, (span, depth) in enumerate(spans):
        span_end = span.end_time or now
        left = _pct((span.start_time - start).total_seconds(), length)
        width = min(_pct((span_end - span.start_time).total_seconds(), length), 100.0 - left)
        duration = (span.end_time - span.start_time).total_seconds() if span.end_time else None
        rows.append(
            Row(
                span=span,
                index=index,
                depth=depth,
                role=role_of(span),
                left_pct=round(left, 3),
                width_pct=round(width, 3),
                duration_s=duration,
                marks=tuple(marks(span, answered=span is answered)),
            )
        )
    ticks = [Tick(pct, seconds(length * pct / 100)) for pct in TICKS]
    return Waterfall(rows=rows, start=start, end=end, ticks=ticks)


def marks(span: Span, *, answered: bool = False) -> list[Mark]:
    """What a person must notice about the span, most important first."""
    attrs = span.attributes
    role = role_of(span)
    found: list[Mark] = []
    if span.status == "error":
        found.append(Mark("failed", "bad"))
    elif span.status == "cancelled":
        found.append(Mark("cancelled", "warn"))
    elif span.status == "running":
        found.append(Mark("running", "info"))
    attempts = attrs.get("attempts")
    if isinstance(attempts, int) and attempts > 1:
        found.append(Mark(f"{attempts} attempts", "warn"))
    if role == "call":
        if deployment := deployment_of(span):
            found.append(Mark(deployment, "info"))
        if answered:
            found.append(Mark("final deployment", "ok"))
    elif role == "reroute":
        found.append(Mark(f"{attrs.get('from_deployment')} → {attrs.get('to_deployment')}", "gold"))
    elif role == "park":
        found.append(Mark("parked", "warn"))
    elif role == "repair" and attrs.get("action"):
        target = f" → {attrs['model']}" if attrs.get("model") else ""
        found.append(Mark(f"repair: {attrs['action']}{target}", "gold"))
    found.extend(_decisions(attrs))
    # A name that already says it (`reroute a → b`, `call up/m`) needs no label repeating it.
    return [mark for mark in found if mark.text not in span.name and mark.text.replace(":", "") not in span.name]


def _decisions(attrs: dict[str, Any]) -> list[Mark]:
    """Guardrail verdicts, the policy's refusal and a cache hit (preflight), and the output guardrails (a call)."""
    found: list[Mark] = []
    if attrs.get("cache_hit"):
        found.append(Mark("cache hit", "ok"))
    for verdict in [*(attrs.get("guardrails") or []), *(attrs.get("output_guardrails") or [])]:
        if isinstance(verdict, dict):
            stage = f"{verdict.get('stage')} " if verdict.get("stage") else ""
            found.append(Mark(f"{stage}{verdict.get('guardrail')}: {verdict.get('action')}", "warn"))
    policy = attrs.get("policy")
    refusal = policy.get("refusal") if isinstance(policy, dict) else None
    for refused in (refusal, attrs.get("output_refusal")):
        if refused:
            code = refused.get("code", refused) if isinstance(refused, dict) else refused
            found.append(Mark(f"refused: {code}", "bad"))
    return found


def seconds(value: float) -> str:
    """A duration as a person reads it on an axis: ms below a second."""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s".replace(".00 s", " s")
    return f"{value / 60:.1f} min"


def _pct(part: float, whole: float) -> float:
    return max(0.0, min(100.0, part / whole * 100)) if whole > 0 else 0.0


def _depth_first(span: Span, depth: int) -> list[tuple[Span, int]]:
    return [(span, depth), *(pair for child in span.children for pair in _depth_first(child, depth + 1))]
