"""guardrails-ai as the runner of our guardrails: each detector of `domain.guardrails` wrapped as a guardrails-ai
`Validator` (`kintsugi/pii`, `kintsugi/secrets`, …), a stage's rules as one `Guard`, giving exactly what
`domain.guardrails.checks.check_input` / `check_output` give.

guardrails-ai costs ~3 s to import and ~3 ms per `Guard.validate`, even on clean text, so:
- it is imported on first use, never when the API or the worker import this module, and always in a worker thread
  (`asyncio.to_thread`), so that import does not stall the other jobs of the event loop;
- a text in which no detector of the rules finds anything never enters a Guard: every validator would pass it,
  and the Guard would hand it back unchanged (the same for an over-long stage and for JSON that parses);
- Guards are built once per distinct rule set and reused.

Nothing leaves the process and nothing is written to the user's home: metrics collection and tracing are off, the
`~/.guardrailsrc` file is never read (our Guards carry their own settings), validators run locally and no hub
validator is ever installed.

Actions: `redact` is `OnFailAction.FIX`, the fix value being the text with every `redact` finding so far replaced.
`block`, `fail` and `log` are `OnFailAction.NOOP`, and the refusal is ours (`GuardResult.blocked`): `EXCEPTION`
would stop the Guard at the first blocking validator, so the guardrails after it would neither run nor report
(a PII finding to log, a secret to redact), and its `ValidationError` names the failure only in a message string,
where we need the guardrail and its kinds as data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from domain.guardrails.checks import (
    CLEAN,
    Detection,
    GuardName,
    GuardResult,
    Segment,
    SegmentResult,
    TextGuard,
    input_result,
    input_segments,
    output_result,
    scan,
    text_guards,
    too_long,
)
from domain.guardrails.redaction import redact
from schemas.decisions import Finding
from schemas.messages import ChatMessage
from schemas.policies import InputGuardrails, OutputGuardrails

VALIDATOR_PREFIX = "kintsugi/"
"""Our validators' names in guardrails-ai's registry: `kintsugi/pii`, … `kintsugi/max_chars`."""
GUARD_CACHE_SIZE = 256
"""Distinct rule sets whose Guards are kept (a tenant's policy versions in use at once are few)."""


async def check_input_ai(messages: list[ChatMessage], rules: InputGuardrails) -> GuardResult:
    """`check_input`, produced by guardrails-ai Guards."""
    guards = text_guards(rules)
    segments = input_segments(messages)
    found = [scan(segment, guards) for segment in segments]
    over_limit = too_long(segments, rules.max_chars)
    if over_limit or any(result is not CLEAN for result in found):
        results, over_limit = await asyncio.to_thread(
            _through_guards, "input", rules, False, guards, segments, found, over_limit
        )
    else:
        results = found
    return input_result(messages, rules, guards, segments, results, over_limit=over_limit)


async def check_output_ai(text: str, rules: OutputGuardrails, *, wants_json: bool) -> GuardResult:
    """`check_output`, produced by guardrails-ai Guards."""
    guards = text_guards(rules, wants_json=wants_json)
    segment = Segment(None, None, None, text)
    found = scan(segment, guards)
    over_limit = too_long([segment], rules.max_chars)
    if over_limit or found is not CLEAN:
        results, over_limit = await asyncio.to_thread(
            _through_guards, "output", rules, wants_json, guards, [segment], [found], over_limit
        )
        found = results[0]
    return output_result(rules, guards, segment, found, over_limit=over_limit)


def _through_guards(
    stage: str,
    rules: InputGuardrails | OutputGuardrails,
    wants_json: bool,
    guards: Sequence[TextGuard],
    segments: Sequence[Segment],
    found: Sequence[SegmentResult],
    over_limit: bool,
) -> tuple[list[SegmentResult], bool]:
    """What the Guards say about the texts in which a detector found something (the others would pass: they keep
    `CLEAN`), and whether the stage is over its length limit. Runs in a worker thread."""
    results = list(found)
    if any(result is not CLEAN for result in found):
        stage_guard = _text_guard(f"{stage}:{wants_json}:{rules.model_dump_json(by_alias=True)}", guards)
        for index, (segment, result) in enumerate(zip(segments, found, strict=True)):
            if result is not CLEAN:
                results[index] = stage_guard.run(segment)
    if over_limit and rules.max_chars is not None:
        over_limit = _length_guard(rules.max_chars).over("".join(segment.text for segment in segments))
    return results, over_limit


# ---------------------------------------------------------------------------------------------------- Guards
@dataclass
class _TextGuard:
    """A Guard running a stage's per-text guardrails; one text at a time (a Guard keeps its last call, which is
    where the validators' results are read from)."""

    guard: Any
    guards: Sequence[TextGuard]
    lock: threading.Lock

    def run(self, segment: Segment) -> SegmentResult:
        metadata = {"text": segment.text, "role": segment.role, "redactions": ()}
        with self.lock:
            self.guard.validate(segment.text, metadata=metadata)
            # The validators' results are in the Guard's last call. Its value as the validators left it is the
            # iteration's validation response: the outcome's validated_output is None once any validator failed
            # without a fix (a `block` or `log` finding).
            iteration = self.guard.history.last.iterations.last
            logs, value = list(iteration.validator_logs), iteration.validation_response
            # The history holds the text; it is not kept past the call.
            self.guard.history.clear()
        library = _library()
        detections: dict[GuardName, Detection] = {}
        for log in logs:
            result = log.validation_result
            if isinstance(result, library.fail_result):
                spans = result.error_spans or []
                findings = [Finding(kind=span.reason, start=span.start, end=span.end) for span in spans]
                name = library.names[log.registered_name]
                detections[name] = Detection(findings, (result.metadata or {}).get("score"))
        if not detections:
            return CLEAN
        redacting = any(guard.action == "redact" and guard.name in detections for guard in self.guards)
        return SegmentResult(detections, value if redacting else None)


@dataclass
class _LengthGuard:
    guard: Any
    lock: threading.Lock

    def over(self, text: str) -> bool:
        with self.lock:
            outcome = self.guard.validate(text)
            self.guard.history.clear()
        return not outcome.validation_passed


_cache: OrderedDict[str, _TextGuard | _LengthGuard] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: str, build: Any) -> Any:
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None:
            entry = _cache[key] = build()
            if len(_cache) > GUARD_CACHE_SIZE:
                _cache.popitem(last=False)
        _cache.move_to_end(key)
        return entry


def _text_guard(key: str, guards: Sequence[TextGuard]) -> _TextGuard:
    def build() -> _TextGuard:
        library = _library()
        validators = [library.validators[guard.name](guard) for guard in guards]
        return _TextGuard(library.new_guard(validators), guards, threading.Lock())

    entry: _TextGuard = _cached(key, build)
    return entry


def _length_guard(max_chars: int) -> _LengthGuard:
    def build() -> _LengthGuard:
        library = _library()
        return _LengthGuard(library.new_guard([library.length_validator(max_chars)]), threading.Lock())

    entry: _LengthGuard = _cached(f"max_chars:{max_chars}", build)
    return entry


# ---------------------------------------------------------------------------------------------------- the library
@dataclass(frozen=True)
class _Library:
    """What is used of guardrails-ai, once it is imported and configured."""

    new_guard: Any
    """validators -> a configured Guard."""
    validators: dict[GuardName, Any]
    """Our validator class per guardrail: built with a `TextGuard`."""
    length_validator: Any
    """Built with `max_chars`."""
    fail_result: Any
    names: dict[str, GuardName]
    """Registered validator name -> guardrail."""


_library_value: _Library | None = None
_library_lock = threading.Lock()


def _library() -> _Library:
    """guardrails-ai, imported and configured on first use (from a worker thread)."""
    global _library_value
    with _library_lock:
        if _library_value is None:
            _library_value = _load()
        return _library_value


@contextlib.contextmanager
def _sqlite_registrations_kept() -> Iterator[None]:
    """Importing guardrails registers process-wide sqlite3 adapters for its own trace database: every datetime
    any SQLite user of the process binds would then be stored as epoch seconds (our app database's included,
    which could not read it back). Ours is not that database: what was registered before comes back."""
    adapters, converters = dict(sqlite3.adapters), dict(sqlite3.converters)
    try:
        yield
    finally:
        sqlite3.adapters.clear()
        sqlite3.adapters.update(adapters)
        sqlite3.converters.clear()
        sqlite3.converters.update(converters)


def _load() -> _Library:
    # The sequential validator service: otherwise guardrails-ai runs validators on an event loop of its own,
    # installing uvloop's policy process-wide to make one, and merges concurrent fixes of the same text, where a
    # redaction needs them applied in order.
    os.environ["GUARDRAILS_RUN_SYNC"] = "true"
    with _sqlite_registrations_kept():
        import guardrails
        import guardrails.call_tracing.sqlite_trace_handler
        from guardrails.classes.rc import RC
        from guardrails.types.on_fail import OnFailAction
        from guardrails.validators import ErrorSpan, FailResult, PassResult, Validator, register_validator

    # Our own settings rather than ~/.guardrailsrc: no metrics, no remote inference, whatever the file says.
    local_rc = RC(enable_metrics=False, use_remote_inferencing=False)
    guardrails.settings.rc = local_rc
    guardrails.settings.disable_tracing = True

    class LocalGuard(guardrails.Guard):  # type: ignore[misc]
        def _load_rc(self) -> None:
            # Guard.configure() would reload ~/.guardrailsrc (and with no file, metrics default to on).
            guardrails.settings.rc = local_rc

    def new_guard(validators: list[Any]) -> Any:
        guard = LocalGuard(history_max_length=1).use(*validators)
        guard.configure(allow_metrics_collection=False)
        return guard

    class TextValidator(Validator):  # type: ignore[misc]
        """One of our guardrails over one text. Every guardrail judges the text as written (`metadata["text"]`),
        not another's placeholders; a `redact` one's fix is the text with all `redact` findings so far replaced,
        so the Guard's last fix is the one-pass redaction of `checks.redact`."""

        def __init__(self, guard: TextGuard) -> None:
            on_fail = OnFailAction.FIX if guard.action == "redact" else OnFailAction.NOOP
            super().__init__(on_fail=on_fail)
            self.text_guard = guard

        def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
            text: str = metadata["text"]
            if not self.text_guard.applies(metadata["role"]):
                return PassResult()
            detection = self.text_guard.detect(text)
            if detection is None:
                return PassResult()
            spans = [ErrorSpan(start=f.start, end=f.end, reason=f.kind) for f in detection.findings]
            kinds = ", ".join(sorted({f.kind for f in detection.findings})) or "score over the threshold"
            after = {**metadata, "score": detection.score}
            fix = None
            if self.text_guard.action == "redact":
                after["redactions"] = (*metadata["redactions"], *detection.findings)
                fix = redact(text, after["redactions"])
            message = f"{self.text_guard.name}: {kinds}"
            return FailResult(error_message=message, fix_value=fix, error_spans=spans, metadata=after)

    names: dict[str, GuardName] = {}
    validators: dict[GuardName, Any] = {}
    guard_names: tuple[GuardName, ...] = ("pii", "secrets", "banned_terms", "injection", "json")
    for name in guard_names:
        registered = f"{VALIDATOR_PREFIX}{name}"
        cls = type(f"Kintsugi{name.title().replace('_', '')}", (TextValidator,), {})
        validators[name] = register_validator(name=registered, data_type="string")(cls)
        names[registered] = name

    @register_validator(name=f"{VALIDATOR_PREFIX}max_chars", data_type="string")
    class KintsugiMaxChars(Validator):  # type: ignore[misc]
        """A stage's whole text over the policy's `max_chars`."""

        def __init__(self, max_chars: int) -> None:
            super().__init__(on_fail=OnFailAction.NOOP, max_chars=max_chars)
            self.max_chars = max_chars

        def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
            if len(value) > self.max_chars:
                return FailResult(error_message=f"max_chars: over {self.max_chars} characters")
            return PassResult()

    return _Library(new_guard, validators, KintsugiMaxChars, FailResult, names)
