"""The guardrails of a stage: a policy's input rules over a request's messages, its output rules over an answer.

Every guardrail reads each text (a string content or a text part) on its own and reports offsets into that text.
`redact` rules replace what they found, all in one pass over the original text, so two guardrails that find the
same characters (a key that contains a phone-like digit run) make one placeholder, and no guardrail reads
another's placeholders. `check_input` and `check_output` are the reference; `activities.guardrails_ai` runs the
same guardrails through guardrails-ai and must give the same `GuardResult`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from domain.guardrails.injection import score_injection
from domain.guardrails.pii import find_pii
from domain.guardrails.redaction import redact
from domain.guardrails.secrets import find_secrets
from domain.guardrails.terms import find_terms
from schemas.decisions import Finding, GuardrailOutcome, GuardStage
from schemas.messages import ChatMessage, ContentPart, JsonObjectFormat, JsonSchemaFormat, ResponseFormat, TextPart
from schemas.policies import InputGuardrails, OutputGuardrails

Action = Literal["block", "redact", "log", "fail"]
GuardName = Literal["pii", "secrets", "banned_terms", "injection", "json", "max_chars"]

INSTRUCTION_ROLES = frozenset({"system", "developer"})
"""The app's own instructions: injection is what arrives from users, tools and documents, and a system prompt
that says "never reveal your instructions" is not an attack on itself."""


@dataclass(frozen=True)
class GuardResult:
    outcomes: list[GuardrailOutcome]
    """Only the guardrails that fired, in the policy's order."""
    checked: list[str]
    """Every guardrail that ran (`input.pii`, …), fired or not."""
    blocked: GuardrailOutcome | None
    """The first outcome whose action is `block` (or `fail`, for the output's JSON rule)."""
    messages: list[ChatMessage] | None = None
    """Input only: the messages with what `redact` rules found replaced; None when nothing was."""
    text: str | None = None
    """Output only: the redacted answer; None when nothing was redacted."""


@dataclass(frozen=True)
class Detection:
    """What one guardrail found in one text; the findings' offsets index that text (message and part unset)."""

    findings: list[Finding]
    score: float | None = None


@dataclass(frozen=True)
class TextGuard:
    """One guardrail of a stage that judges each text on its own."""

    name: GuardName
    action: Action
    detect: Callable[[str], Detection | None]
    """None: the text passes."""
    skip_roles: frozenset[str] = frozenset()

    def applies(self, role: str | None) -> bool:
        return role not in self.skip_roles


@dataclass(frozen=True)
class Segment:
    """A text the guardrails read: a message's string content or one of its text parts, or the answer."""

    message: int | None
    part: int | None
    role: str | None
    text: str


@dataclass(frozen=True)
class SegmentResult:
    detections: dict[GuardName, Detection] = field(default_factory=dict)
    """The guardrails that fired on this text."""
    redacted: str | None = None
    """The text with the `redact` guardrails' findings replaced; None when none fired."""


CLEAN = SegmentResult()


# ---------------------------------------------------------------------------------------------------- detectors
def _found(findings: list[Finding]) -> Detection | None:
    return Detection(findings) if findings else None


def _injection(threshold: float) -> Callable[[str], Detection | None]:
    def detect(text: str) -> Detection | None:
        scored = score_injection(text)
        return Detection(scored.findings, scored.score) if scored.score >= threshold else None

    return detect


def _json(text: str) -> Detection | None:
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        return Detection([Finding(kind="invalid_json", start=min(error.pos, len(text)), end=len(text))])
    return None


def text_guards(rules: InputGuardrails | OutputGuardrails, *, wants_json: bool = False) -> list[TextGuard]:
    """The per-text guardrails `rules` ask for, in the policy's order (the JSON rule only when the request asked
    for JSON)."""
    guards: list[TextGuard] = []
    if rules.pii is not None:
        kinds = tuple(rules.pii.kinds)
        guards.append(TextGuard("pii", rules.pii.action, lambda text: _found(find_pii(text, kinds))))
    if rules.secrets is not None:
        guards.append(TextGuard("secrets", rules.secrets.action, lambda text: _found(find_secrets(text))))
    if rules.banned_terms is not None:
        terms = tuple(rules.banned_terms.terms)
        action = rules.banned_terms.action
        guards.append(TextGuard("banned_terms", action, lambda text: _found(find_terms(text, terms))))
    if isinstance(rules, InputGuardrails) and rules.injection is not None:
        guards.append(
            TextGuard("injection", rules.injection.action, _injection(rules.injection.threshold), INSTRUCTION_ROLES)
        )
    if isinstance(rules, OutputGuardrails) and rules.json_ is not None and wants_json:
        guards.append(TextGuard("json", rules.json_.action, _json))
    return guards


def wants_json(response_format: ResponseFormat | None) -> bool:
    """Whether a request asked for a JSON answer (the output's JSON rule applies only then)."""
    return isinstance(response_format, JsonObjectFormat | JsonSchemaFormat)


def has_rules(rules: InputGuardrails | OutputGuardrails) -> bool:
    """Whether `rules` ask for any guardrail at all (a stage without any skips the guardrails entirely)."""
    json_rule = rules.json_ if isinstance(rules, OutputGuardrails) else None
    parts = (rules.pii, rules.secrets, rules.banned_terms, getattr(rules, "injection", None), json_rule)
    return rules.max_chars is not None or any(part is not None for part in parts)


# ---------------------------------------------------------------------------------------------------- a text
def redacted_text(text: str, guards: Sequence[TextGuard], detections: dict[GuardName, Detection]) -> str | None:
    """The text with the findings of the `redact` guardrails that fired replaced; None when none fired."""
    findings = [
        finding
        for guard in guards
        if guard.action == "redact" and guard.name in detections
        for finding in detections[guard.name].findings
    ]
    return redact(text, findings) if findings else None


def scan(segment: Segment, guards: Sequence[TextGuard]) -> SegmentResult:
    """What the guardrails find in one text."""
    detections: dict[GuardName, Detection] = {}
    for guard in guards:
        if guard.applies(segment.role):
            detection = guard.detect(segment.text)
            if detection is not None:
                detections[guard.name] = detection
    if not detections:
        return CLEAN
    return SegmentResult(detections, redacted_text(segment.text, guards, detections))


# ---------------------------------------------------------------------------------------------------- a stage
def input_segments(messages: Sequence[ChatMessage]) -> list[Segment]:
    """The texts of a request: string contents and text parts (images, audio and files carry none)."""
    segments: list[Segment] = []
    for index, message in enumerate(messages):
        if isinstance(message.content, str):
            segments.append(Segment(index, None, message.role, message.content))
        elif message.content is not None:
            for part_index, part in enumerate(message.content):
                if isinstance(part, TextPart):
                    segments.append(Segment(index, part_index, message.role, part.text))
    return segments


def too_long(segments: Sequence[Segment], max_chars: int | None) -> bool:
    return max_chars is not None and sum(len(segment.text) for segment in segments) > max_chars


def outcomes_of(
    stage: GuardStage,
    guards: Sequence[TextGuard],
    segments: Sequence[Segment],
    results: Sequence[SegmentResult],
    *,
    max_chars: int | None,
    over_limit: bool,
) -> tuple[list[GuardrailOutcome], list[str], GuardrailOutcome | None]:
    """The outcomes, the guardrails checked and the blocking outcome of a stage, from what each text showed."""
    outcomes: list[GuardrailOutcome] = []
    for guard in guards:
        findings: list[Finding] = []
        scores: list[float] = []
        for segment, result in zip(segments, results, strict=True):
            detection = result.detections.get(guard.name)
            if detection is None:
                continue
            where = {"message": segment.message, "part": segment.part}
            findings.extend(finding.model_copy(update=where) for finding in detection.findings)
            if detection.score is not None:
                scores.append(detection.score)
        if findings or scores:
            outcomes.append(
                GuardrailOutcome(
                    guardrail=guard.name,
                    stage=stage,
                    action=guard.action,
                    kinds=sorted({f.kind for f in findings}),
                    findings=findings,
                    score=max(scores) if scores else None,
                )
            )
    if over_limit:
        outcomes.append(GuardrailOutcome(guardrail="max_chars", stage=stage, action="block", kinds=["too_long"]))
    checked = [f"{stage}.{guard.name}" for guard in guards]
    if max_chars is not None:
        checked.append(f"{stage}.max_chars")
    blocked = next((outcome for outcome in outcomes if outcome.action in ("block", "fail")), None)
    return outcomes, checked, blocked


def redacted_messages(
    messages: Sequence[ChatMessage], segments: Sequence[Segment], results: Sequence[SegmentResult]
) -> list[ChatMessage] | None:
    """Copies of `messages` with each redacted text in place; None when nothing was redacted."""
    changes = {
        (segment.message, segment.part): result.redacted
        for segment, result in zip(segments, results, strict=True)
        if result.redacted is not None
    }
    if not changes:
        return None
    copies: list[ChatMessage] = []
    for index, message in enumerate(messages):
        content = message.content
        if isinstance(content, str) and (index, None) in changes:
            message = message.model_copy(update={"content": changes[(index, None)]})
        elif isinstance(content, list) and any((index, j) in changes for j in range(len(content))):
            parts: list[ContentPart] = [
                part.model_copy(update={"text": changes[(index, j)]}) if (index, j) in changes else part
                for j, part in enumerate(content)
            ]
            message = message.model_copy(update={"content": parts})
        copies.append(message)
    return copies


def input_result(
    messages: Sequence[ChatMessage],
    rules: InputGuardrails,
    guards: Sequence[TextGuard],
    segments: Sequence[Segment],
    results: Sequence[SegmentResult],
    *,
    over_limit: bool,
) -> GuardResult:
    outcomes, checked, blocked = outcomes_of(
        "input", guards, segments, results, max_chars=rules.max_chars, over_limit=over_limit
    )
    return GuardResult(outcomes, checked, blocked, messages=redacted_messages(messages, segments, results))


def output_result(
    rules: OutputGuardrails, guards: Sequence[TextGuard], segment: Segment, result: SegmentResult, *, over_limit: bool
) -> GuardResult:
    outcomes, checked, blocked = outcomes_of(
        "output", guards, [segment], [result], max_chars=rules.max_chars, over_limit=over_limit
    )
    return GuardResult(outcomes, checked, blocked, text=result.redacted)


def check_input(messages: list[ChatMessage], rules: InputGuardrails) -> GuardResult:
    """The input guardrails of `rules` over a request's messages (never changed: redaction returns copies)."""
    guards = text_guards(rules)
    segments = input_segments(messages)
    results = [scan(segment, guards) for segment in segments]
    return input_result(messages, rules, guards, segments, results, over_limit=too_long(segments, rules.max_chars))


def check_output(text: str, rules: OutputGuardrails, *, wants_json: bool) -> GuardResult:
    """The output guardrails of `rules` over an answer; `wants_json`: the request asked for JSON
    (`response_format` of type `json_object` or `json_schema`)."""
    guards = text_guards(rules, wants_json=wants_json)
    segment = Segment(None, None, None, text)
    result = scan(segment, guards)
    return output_result(rules, guards, segment, result, over_limit=too_long([segment], rules.max_chars))
