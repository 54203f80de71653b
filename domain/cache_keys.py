"""Which requests the response cache may answer, and what besides the prompt's text must match for a hit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from schemas.jobs import JobKind, JobParams
from schemas.messages import ChatMessage, TextPart

_PROMPT_FREE = {"user", "metadata", "store", "service_tier"}
"""Parameters that label a request or choose how it is billed, not what it asks: they do not split the cache."""


def cacheable(kind: JobKind, params: JobParams, *, allow_temperature_above_zero: bool = False) -> bool:
    """A chat request whose answer may be reused: not sampled on purpose (`temperature > 0`, several choices)
    unless the tenant allows it. An unset temperature takes the provider's default and is cached: a tenant that
    turns the cache on asks for repeated prompts to be answered once."""
    if kind != "chat":
        return False
    if params.n is not None and params.n > 1:
        return False
    return allow_temperature_above_zero or not params.temperature


def request_fingerprint(route: str, params: JobParams, messages: Sequence[ChatMessage]) -> str:
    """What two requests must share exactly to share an answer; only the rest of their text may differ a little.

    The route, tools, response format and every other parameter; the last message whole (the question being
    asked: near-identical conversations that end in "yes" and in "no" are different requests); and every
    non-text part (an image, audio or a file), which similarity does not read. sha256 hex of their canonical JSON.
    """
    asked = {key: value for key, value in params.declared().items() if key not in _PROMPT_FREE}
    media = [_dump(part) for message in messages[:-1] for part in _parts(message) if not isinstance(part, TextPart)]
    last = _dump(messages[-1]) if messages else None
    canonical = json.dumps(
        {"route": route, "params": asked, "last": last, "media": media}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _parts(message: ChatMessage) -> list[Any]:
    return message.content if isinstance(message.content, list) else []


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json", exclude_none=True, by_alias=True)
